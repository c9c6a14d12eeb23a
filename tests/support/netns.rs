//! Test hosts of our own: two network namespaces joined by a veth pair, each with an address we choose, `lo` up and a
//! multicast route (without it, sending to 224.0.0.251 fails with "Network is unreachable"). mDNS ignores loopback,
//! so this is how a test exercises it without multicasting on the machine's real interfaces. The namespaces (and
//! with them the veth pair) are deleted on drop, also when the test fails.

use std::process::Command;

pub struct NamespacePair {
    pub names: [String; 2],
    pub addresses: [String; 2],
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl NamespacePair {
    /// Creates the pair, or fails the test with the `ip` command that failed (it needs root and iproute2).
    pub fn create(tag: &str, subnet: u8) -> NamespacePair {
        let pid = std::process::id();
        let pair = NamespacePair {
            names: [format!("sn-{tag}-{pid}-a"), format!("sn-{tag}-{pid}-b")],
            addresses: [format!("10.231.{subnet}.1"), format!("10.231.{subnet}.2")],
        };
        let veth = [format!("snv{pid}{subnet}a"), format!("snv{pid}{subnet}b")];
        let setup = || -> Result<(), String> {
            for name in &pair.names {
                ip(&["netns", "add", name])?;
            }
            ip(&["link", "add", &veth[0], "type", "veth", "peer", "name", &veth[1]])?;
            for ((ns, dev), address) in pair.names.iter().zip(&veth).zip(&pair.addresses) {
                ip(&["link", "set", dev, "netns", ns])?;
                ip(&["-n", ns, "addr", "add", &format!("{address}/24"), "dev", dev])?;
                ip(&["-n", ns, "link", "set", dev, "up"])?;
                ip(&["-n", ns, "link", "set", "lo", "up"])?;
                ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", dev])?;
            }
            Ok(())
        };
        // Dropping `pair` on failure removes whatever was created.
        setup().unwrap_or_else(|e| panic!("cannot set up network namespaces (root and iproute2 needed): {e}"));
        // A node started before the link is operationally up can lose its first mDNS packets; wait for carrier.
        let deadline = std::time::Instant::now() + super::DEADLINE;
        for (ns, dev) in pair.names.iter().zip(&veth) {
            while !link_is_up(ns, dev) {
                assert!(std::time::Instant::now() < deadline, "{dev} in {ns} never came up");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        pair
    }
}

fn link_is_up(ns: &str, dev: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "dev", dev])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("state UP"))
        .unwrap_or(false)
}

impl Drop for NamespacePair {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
