//! Proxmox task ids (`pve-common` `src/PVE/UPID.pm`):
//! `UPID:<node>:<pid 8hex>:<pstart 8-9hex>:<starttime 8hex>:<type>:<id>:<user>:`.

use std::fmt;
use std::str::FromStr;

/// A parsed UPID. `Display` gives back exactly the string PVE sent (trailing colon included).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    raw: String,
    /// The node that runs the task; task status/log calls go to this node.
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    /// Unix seconds.
    pub starttime: i64,
    /// Task type: `vzclone`, `vzstart`, `vzstop`, `vzshutdown`, `vzdestroy`, ...
    pub task_type: String,
    /// The object id. Quirk: for `vzclone` this is the SOURCE vmid (the template), not newid.
    pub id: String,
    /// `user@realm` or a token id `user@realm!tokenid`.
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse worker upid '{0}'")]
pub struct UpidParseError(pub String);

impl Upid {
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Build a UPID in PVE's format (used by the simulator and tests).
    pub fn new(
        node: &str,
        pid: u32,
        pstart: u64,
        starttime: i64,
        task_type: &str,
        id: &str,
        user: &str,
    ) -> Self {
        let raw =
            format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{task_type}:{id}:{user}:");
        Upid {
            raw,
            node: node.into(),
            pid,
            pstart,
            starttime,
            task_type: task_type.into(),
            id: id.into(),
            user: user.into(),
        }
    }
}

impl FromStr for Upid {
    type Err = UpidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UpidParseError(s.to_string());
        let rest = s.strip_prefix("UPID:").ok_or_else(err)?;
        // Quirk: the UPID ends with ':'; tolerate its absence when reading.
        let rest = rest.strip_suffix(':').unwrap_or(rest);
        let parts: Vec<&str> = rest.splitn(7, ':').collect();
        if parts.len() != 7 {
            return Err(err());
        }
        let hex_u64 = |p: &str| u64::from_str_radix(p, 16).map_err(|_| err());
        let node = parts[0];
        if node.is_empty() || parts[4].is_empty() || parts[6].is_empty() {
            return Err(err());
        }
        let pid = u32::try_from(hex_u64(parts[1])?).map_err(|_| err())?;
        let pstart = hex_u64(parts[2])?;
        let starttime = i64::try_from(hex_u64(parts[3])?).map_err(|_| err())?;
        let raw = if s.ends_with(':') {
            s.to_string()
        } else {
            format!("{s}:")
        };
        Ok(Upid {
            raw,
            node: node.into(),
            pid,
            pstart,
            starttime,
            task_type: parts[4].into(),
            id: parts[5].into(),
            user: parts[6].into(),
        })
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl serde::Serialize for Upid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for Upid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        type Want = Option<(&'static str, &'static str, &'static str, &'static str)>;
        let rows: &[(&str, &str, Want)] = &[
            (
                "clone UPID from Telmate tf#677 names the source vmid",
                "UPID:proxmox2:000D7AA2:08D5A17C:63DF62A5:vzclone:200:root@pam!api_token:",
                Some(("proxmox2", "vzclone", "200", "root@pam!api_token")),
            ),
            (
                "9-digit pstart",
                "UPID:pve:0000ABCD:123456789:63DF62A5:vzstart:105:root@pam:",
                Some(("pve", "vzstart", "105", "root@pam")),
            ),
            (
                "missing trailing colon is tolerated",
                "UPID:pve:1:2:3:vzstop:1:u@pam",
                Some(("pve", "vzstop", "1", "u@pam")),
            ),
            ("no prefix", "pve:1:2:3:vzstop:1:u@pam:", None),
            ("too few fields", "UPID:pve:1:2:vzstop:", None),
            ("non-hex pid", "UPID:pve:XYZ:2:3:vzstop:1:u@pam:", None),
        ];
        for (reason, s, want) in rows {
            let got = s.parse::<Upid>();
            match (got, want) {
                (Ok(u), Some((node, ty, id, user))) => {
                    assert_eq!(
                        (&*u.node, &*u.task_type, &*u.id, &*u.user),
                        (*node, *ty, *id, *user),
                        "{reason}"
                    );
                    assert!(u.to_string().ends_with(':'), "{reason}");
                }
                (Err(_), None) => {}
                (got, _) => panic!("{reason}: {got:?}"),
            }
        }
    }

    #[test]
    fn roundtrip_new_and_serde() {
        let u = Upid::new(
            "pve",
            0xABCD,
            0x1234,
            0x63DF62A5,
            "vzclone",
            "900",
            "root@pam!tok",
        );
        assert_eq!(
            u.to_string(),
            "UPID:pve:0000ABCD:00001234:63DF62A5:vzclone:900:root@pam!tok:"
        );
        let back: Upid = u.to_string().parse().unwrap();
        assert_eq!(back, u);
        let j = serde_json::to_string(&u).unwrap();
        let d: Upid = serde_json::from_str(&j).unwrap();
        assert_eq!(d, u);
    }
}
