#!/usr/bin/env python3
"""Regenerate pve-allowlist.json from the official PVE API schema (pve-docs apidata).

Usage: gen_allowlist.py /path/to/pve-apidata-9.1.json > pve-allowlist.json

The schema is AGPL-3.0-or-later data; only this compact derived allow-list is committed, as
test data for tests/schema.rs. Keeps per method+path: param name -> type, format (name, or the
keys of a property-string format with their essentials), enum, minimum, maximum, maxLength,
pattern, optional; and the type the method returns.
"""
import json, sys

ENDPOINTS = [
    ("GET", "/version"), ("GET", "/cluster/resources"), ("GET", "/cluster/nextid"),
    ("POST", "/nodes/{node}/lxc/{vmid}/clone"), ("GET", "/nodes/{node}/lxc/{vmid}/config"),
    ("PUT", "/nodes/{node}/lxc/{vmid}/config"), ("GET", "/nodes/{node}/lxc/{vmid}/status/current"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/start"), ("POST", "/nodes/{node}/lxc/{vmid}/status/stop"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/reboot"), ("DELETE", "/nodes/{node}/lxc/{vmid}"),
    ("GET", "/nodes/{node}/lxc/{vmid}/interfaces"), ("GET", "/nodes/{node}/tasks/{upid}/status"),
    ("GET", "/nodes/{node}/tasks/{upid}/log"),
    # Served by the simulator (and partly used by the client): the task listing, resize, the
    # node and container listings.
    ("GET", "/nodes/{node}/tasks"), ("PUT", "/nodes/{node}/lxc/{vmid}/resize"),
    ("GET", "/nodes"), ("GET", "/nodes/{node}/lxc"),
]
KEEP = ("type", "enum", "minimum", "maximum", "maxLength", "pattern")


def find(nodes, path):
    for n in nodes:
        if n["path"] == path:
            return n
        if path.startswith(n["path"] + "/") and n.get("children"):
            r = find(n["children"], path)
            if r:
                return r


def essentials(p):
    out = {k: p[k] for k in KEEP if k in p}
    for k in ("minimum", "maximum"):
        if k in out:
            out[k] = int(float(out[k])) if float(out[k]).is_integer() else float(out[k])
    if not p.get("optional"):
        out["required"] = True
    f = p.get("format")
    if isinstance(f, str):
        out["format"] = f
    elif isinstance(f, dict):
        out["keys"] = {k: essentials(v) for k, v in sorted(f.items())}
    return out


def main():
    data = json.load(open(sys.argv[1]))
    out = {
        "_source": "derived from pve-docs api-viewer apidata (PVE 9.1, commit a8736b6) by gen_allowlist.py",
        "_indexed": {"net[n]": 32, "mp[n]": 256, "dev[n]": 256, "unused[n]": 256},
        "endpoints": {},
    }
    for method, path in ENDPOINTS:
        info = find(data, path)["info"][method]
        params = info["parameters"]
        out["endpoints"][f"{method} {path}"] = {
            "name": info["name"],
            "returns": info.get("returns", {}).get("type", "null"),
            "additionalProperties": bool(params.get("additionalProperties", 1)),
            "params": {k: essentials(v) for k, v in sorted(params.get("properties", {}).items())},
        }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


main()
