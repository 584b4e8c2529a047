//! Proxmox VE client (being written).
