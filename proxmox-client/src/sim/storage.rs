//! Simulated storages and the volumes on them: which can make linked clones, how volume ids
//! are named, and the `rootfs` line with its size (docs/proxmox-api.md §2, clone and resize).

/// A storage of the simulated node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimStorage {
    /// The storage id (`local-lvm`, `local`, ...).
    pub id: String,
    pub kind: StorageKind,
}

impl SimStorage {
    pub fn new(id: &str, kind: StorageKind) -> Self {
        SimStorage {
            id: id.into(),
            kind,
        }
    }
}

/// The storage types whose behaviour differs for clones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// LVM-thin: snapshots, so linked clones (PVE's default `local-lvm`).
    LvmThin,
    /// ZFS pool: snapshots, so linked clones.
    ZfsPool,
    /// A directory with raw images: no linked clones of a CT volume (PVE's default `local`).
    Dir,
    /// Plain (thick) LVM: no snapshots, no linked clones.
    Lvm,
}

impl StorageKind {
    /// Whether `volume_has_feature(.., 'clone', ..)` holds for a CT volume on it.
    pub fn linked_clones(self) -> bool {
        match self {
            StorageKind::LvmThin | StorageKind::ZfsPool => true,
            StorageKind::Dir | StorageKind::Lvm => false,
        }
    }

    /// The volume id of disk 0 of `vmid` (`base-` for a template's).
    pub(crate) fn volid(self, storage: &str, vmid: u32, base: bool) -> String {
        let prefix = if base { "base" } else { "vm" };
        match self {
            StorageKind::LvmThin | StorageKind::Lvm => format!("{storage}:{prefix}-{vmid}-disk-0"),
            // Quirk: a ZFS CT volume is a subvolume: `subvol-`, `basevol-` for a template.
            StorageKind::ZfsPool => {
                let prefix = if base { "basevol" } else { "subvol" };
                format!("{storage}:{prefix}-{vmid}-disk-0")
            }
            StorageKind::Dir => format!("{storage}:{vmid}/{prefix}-{vmid}-disk-0.raw"),
        }
    }
}

impl StorageKind {
    /// The volume id `vdisk_clone` gives a linked clone of `source`'s base volume.
    pub(crate) fn linked_volid(self, storage: &str, source: u32, newid: u32) -> String {
        match self {
            // Quirk: a ZFS clone names its origin; an LVM-thin one does not.
            StorageKind::ZfsPool => {
                format!("{storage}:basevol-{source}-disk-0/subvol-{newid}-disk-0")
            }
            other => other.volid(storage, newid, false),
        }
    }
}

/// A container's root volume: `rootfs: <volid>,size=<size>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rootfs {
    pub volid: String,
    pub bytes: u64,
}

impl Rootfs {
    /// The storage id: the part of the volume id before `:`.
    pub fn storage(&self) -> &str {
        self.volid.split(':').next().unwrap_or("")
    }

    /// The config line, with the size as PVE prints it (`format_size`: the largest of T, G, M,
    /// K that divides the size exactly).
    pub fn line(&self) -> String {
        format!("{},size={}", self.volid, format_size(self.bytes))
    }
}

const KIB: u64 = 1024;

pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, n) in [
        ("T", KIB.pow(4)),
        ("G", KIB.pow(3)),
        ("M", KIB.pow(2)),
        ("K", KIB),
    ] {
        if bytes >= n && bytes.is_multiple_of(n) {
            return format!("{}{unit}", bytes / n);
        }
    }
    bytes.to_string()
}

/// A `size` argument of resize: `\+?\d+(\.\d+)?[KMGT]?` (the schema's pattern). Without a
/// unit the number is bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SizeArg {
    /// `+N`: grow by N rather than set to N.
    pub relative: bool,
    pub bytes: u64,
}

impl SizeArg {
    pub fn parse(s: &str) -> Option<SizeArg> {
        let (relative, rest) = match s.strip_prefix('+') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let (num, mult) = match rest.chars().last()? {
            'K' => (&rest[..rest.len() - 1], KIB),
            'M' => (&rest[..rest.len() - 1], KIB.pow(2)),
            'G' => (&rest[..rest.len() - 1], KIB.pow(3)),
            'T' => (&rest[..rest.len() - 1], KIB.pow(4)),
            _ => (rest, 1),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let digits = |d: &str| d.chars().all(|c| c.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || (num.contains('.') && frac.is_empty())
        {
            return None;
        }
        let v: f64 = num.parse().ok()?;
        Some(SizeArg {
            relative,
            bytes: (v * mult as f64) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        for (bytes, want, why) in [
            (8 << 30, "8G", "whole gigabytes"),
            (8704 << 20, "8704M", "8.5 GiB is not a whole G"),
            (1 << 40, "1T", "a tebibyte"),
            (3072, "3K", "not a whole M"),
            (1000, "1000", "no unit divides it"),
        ] {
            assert_eq!(format_size(bytes), want, "{why}");
        }
    }

    #[test]
    fn size_arguments_parse_as_the_schema_pattern() {
        let gib = 1u64 << 30;
        for (arg, want, why) in [
            ("32G", Some((false, 32 * gib)), "absolute"),
            ("+4G", Some((true, 4 * gib)), "relative"),
            ("1.5G", Some((false, 3 * gib / 2)), "a fraction"),
            ("1024", Some((false, 1024)), "bytes without a unit"),
            ("G", None, "no number"),
            ("-4G", None, "no minus in the pattern"),
            ("4GB", None, "a unit is one letter"),
            ("1.G", None, "a dot needs digits after it"),
        ] {
            let got = SizeArg::parse(arg).map(|s| (s.relative, s.bytes));
            assert_eq!(got, want, "{arg}: {why}");
        }
    }
}
