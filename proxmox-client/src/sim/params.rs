//! Strict parameter checks, hand-written from docs/proxmox-api.md §2 (PVE has
//! additionalProperties: 0 on every method used here), and form decoding.

use super::SimEndpoint;
use super::http::PathParams;
use super::storage::SizeArg;
use super::wording::{
    E_BAD_DNS_NAME, E_BAD_PATTERN, E_BAD_VMID, E_MISSING, E_NAME_MISSING, E_NOT_DEFINED, e_bad_tag,
};
use crate::request::Endpoint;
use std::collections::BTreeMap;

#[derive(Clone, Copy)]
pub(crate) enum P {
    Bool,
    Int(i64, Option<i64>),
    Num,
    Str(Option<usize>),
    Enum(&'static [&'static str]),
    /// Format `pve-vmid`: `[1-9][0-9]{2,8}` (checked before the range).
    Vmid,
    /// Format `dns-name`: dot-separated labels of letters, digits and inner hyphens.
    DnsName,
    /// Resize's `size`: `\+?\d+(\.\d+)?[KMGT]?`.
    Size,
    /// Resize's `disk`: `rootfs` or `mp0`..`mp255`.
    Disk,
}

pub(crate) fn spec(endpoint: &str) -> &'static [(&'static str, P, bool)] {
    use P::*;
    const VMID: P = Vmid;
    const EPOCH: P = Int(i64::MIN, None);
    match endpoint {
        Endpoint::CLUSTER_RESOURCES => &[("type", Enum(&["vm", "storage", "node", "sdn"]), false)],
        Endpoint::NEXT_ID => &[("vmid", VMID, false)],
        Endpoint::CLONE => &[
            ("newid", VMID, true),
            ("hostname", DnsName, false),
            ("description", Str(None), false),
            ("full", Bool, false),
            ("storage", Str(None), false),
            ("target", Str(None), false),
            ("pool", Str(None), false),
            ("snapname", Str(Some(40)), false),
            ("bwlimit", Num, false),
        ],
        Endpoint::CONFIG_GET => &[("current", Bool, false), ("snapshot", Str(Some(40)), false)],
        Endpoint::CONFIG_PUT => &[
            (
                "arch",
                Enum(&["amd64", "i386", "arm64", "armhf", "riscv32", "riscv64"]),
                false,
            ),
            ("cmode", Enum(&["shell", "console", "tty"]), false),
            ("console", Bool, false),
            ("cores", Int(1, Some(8192)), false),
            ("cpulimit", Num, false),
            ("cpuunits", Int(0, Some(500_000)), false),
            ("debug", Bool, false),
            ("delete", Str(None), false),
            ("description", Str(Some(8192)), false),
            ("digest", Str(Some(40)), false),
            ("entrypoint", Str(None), false),
            ("env", Str(None), false),
            ("features", Str(None), false),
            ("hookscript", Str(None), false),
            ("hostname", DnsName, false),
            (
                "lock",
                Enum(&[
                    "backup",
                    "create",
                    "destroyed",
                    "disk",
                    "fstrim",
                    "migrate",
                    "mounted",
                    "rollback",
                    "snapshot",
                    "snapshot-delete",
                ]),
                false,
            ),
            ("memory", Int(16, None), false),
            ("nameserver", Str(None), false),
            ("onboot", Bool, false),
            ("ostype", Str(None), false),
            ("protection", Bool, false),
            ("revert", Str(None), false),
            ("rootfs", Str(None), false),
            ("searchdomain", Str(None), false),
            ("startup", Str(None), false),
            ("swap", Int(0, None), false),
            ("tags", Str(None), false),
            ("template", Bool, false),
            ("timezone", Str(None), false),
            ("tty", Int(0, Some(6)), false),
            ("unprivileged", Bool, false),
        ],
        Endpoint::START => &[("skiplock", Bool, false), ("debug", Bool, false)],
        Endpoint::STOP => &[
            ("skiplock", Bool, false),
            ("overrule-shutdown", Bool, false),
        ],
        Endpoint::SHUTDOWN => &[("forceStop", Bool, false), ("timeout", Int(0, None), false)],
        Endpoint::REBOOT => &[("timeout", Int(0, None), false)],
        Endpoint::DELETE => &[
            ("purge", Bool, false),
            ("force", Bool, false),
            ("destroy-unreferenced-disks", Bool, false),
        ],
        SimEndpoint::TASK_LIST => &[
            ("start", Int(0, None), false),
            ("limit", Int(0, None), false),
            ("userfilter", Str(None), false),
            ("typefilter", Str(None), false),
            ("vmid", VMID, false),
            ("errors", Bool, false),
            ("source", Enum(&["archive", "active", "all"]), false),
            ("since", EPOCH, false),
            ("until", EPOCH, false),
            ("statusfilter", Str(None), false),
        ],
        SimEndpoint::RESIZE => &[
            ("disk", Disk, true),
            ("size", Size, true),
            ("digest", Str(Some(40)), false),
        ],
        Endpoint::TASK_LOG => &[
            ("start", Int(0, None), false),
            ("limit", Int(0, None), false),
            ("download", Bool, false),
        ],
        _ => &[],
    }
}

/// `net[n]` (0..31), `mp[n]`/`dev[n]`/`unused[n]` (0..255) on config PUT.
pub(crate) fn indexed_ok(endpoint: &str, k: &str) -> bool {
    if endpoint != Endpoint::CONFIG_PUT {
        return false;
    }
    for (prefix, max) in [("net", 31u32), ("mp", 255), ("dev", 255), ("unused", 255)] {
        if let Some(n) = k.strip_prefix(prefix)
            && !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit())
            && n.parse::<u32>().is_ok_and(|i| i <= max)
            && (n == "0" || !n.starts_with('0'))
        {
            return true;
        }
    }
    false
}

pub(crate) fn check_value(p: P, v: &str) -> Result<(), String> {
    match p {
        // Quirk: booleans must be 0/1 (or JSON true/false); the string "true" is refused.
        P::Bool => match v {
            "0" | "1" => Ok(()),
            _ => Err(format!("type check ('boolean') failed - got '{v}'")),
        },
        P::Int(min, max) => {
            let n: i64 = v
                .parse()
                .map_err(|_| format!("type check ('integer') failed - got '{v}'"))?;
            if n < min {
                return Err(format!("value must have a minimum value of {min}"));
            }
            if let Some(max) = max
                && n > max
            {
                return Err(format!("value must have a maximum value of {max}"));
            }
            Ok(())
        }
        P::Num => v
            .parse::<f64>()
            .map(|_| ())
            .map_err(|_| format!("type check ('number') failed - got '{v}'")),
        P::Str(Some(max)) if v.chars().count() > max => {
            Err(format!("value may only be {max} characters long"))
        }
        P::Str(_) => Ok(()),
        P::Vmid => {
            let n: i64 = v
                .parse()
                .map_err(|_| format!("type check ('integer') failed - got '{v}'"))?;
            let digits = v.trim_start_matches('+');
            if !(3..=9).contains(&digits.len()) || digits.starts_with('0') || n < 100 {
                return Err(E_BAD_VMID.into());
            }
            Ok(())
        }
        P::DnsName if valid_dns_name(v) => Ok(()),
        P::DnsName => Err(E_BAD_DNS_NAME.into()),
        P::Size if SizeArg::parse(v).is_some() => Ok(()),
        P::Size => Err(E_BAD_PATTERN.into()),
        P::Disk if valid_disk(v) => Ok(()),
        P::Disk => {
            let all: Vec<String> = std::iter::once("rootfs".to_string())
                .chain((0..256).map(|i| format!("mp{i}")))
                .collect();
            Err(format!(
                "value '{v}' does not have a value in the enumeration '{}'",
                all.join(", ")
            ))
        }
        P::Enum(vals) if vals.contains(&v) => Ok(()),
        P::Enum(vals) => Err(format!(
            "value '{v}' does not have a value in the enumeration '{}'",
            vals.join(", ")
        )),
    }
}

/// `pve_verify_dns_name`: `^(label\.)*label$`, a label `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`.
pub(crate) fn valid_dns_name(v: &str) -> bool {
    v.split('.').all(|l| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    })
}

fn valid_disk(v: &str) -> bool {
    v == "rootfs"
        || v.strip_prefix("mp").is_some_and(|n| {
            n.parse::<u32>().is_ok_and(|i| i <= 255) && (n == "0" || !n.starts_with('0'))
        })
}

pub(crate) fn valid_tag(t: &str) -> bool {
    crate::request::is_valid_tag(t)
}

pub(crate) fn validate(
    endpoint: &str,
    params: &BTreeMap<String, String>,
    pp: &PathParams,
) -> Result<(), BTreeMap<String, String>> {
    let mut errors = BTreeMap::new();
    if let Some(raw) = &pp.vmid_raw
        && let Err(e) = check_value(P::Vmid, raw)
    {
        errors.insert("vmid".to_string(), e);
    }
    let spec = spec(endpoint);
    for (k, v) in params {
        if let Some((_, p, _)) = spec.iter().find(|(n, _, _)| n == k) {
            if let Err(e) = check_value(*p, v) {
                errors.insert(k.clone(), e);
            }
        } else if indexed_ok(endpoint, k) {
            // Quirk: `name` is the one required key of netN.
            if k.starts_with("net") && !v.split(',').any(|kv| kv.starts_with("name=")) {
                errors.insert(k.clone(), E_NAME_MISSING.into());
            }
        } else {
            errors.insert(k.clone(), E_NOT_DEFINED.into());
        }
    }
    for (k, _, required) in spec {
        if *required && !params.contains_key(*k) {
            errors.insert(k.to_string(), E_MISSING.into());
        }
    }
    if endpoint == Endpoint::CONFIG_PUT
        && let Some(tags) = params.get("tags")
        && let Some(bad) = crate::types::split_tags(tags)
            .into_iter()
            .find(|t| !valid_tag(t))
    {
        errors.insert("tags".into(), e_bad_tag(&bad));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

pub(crate) fn hexval(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hexval(b[i + 1]), hexval(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}
