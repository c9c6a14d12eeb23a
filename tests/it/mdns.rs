//! mDNS on a LAN: two nodes with no bootstrap peers, each in its own network namespace on one virtual link, find
//! each other through mDNS alone, connect, and gossip.

use std::{
    cell::{Cell, RefCell},
    io::Write,
};

use crate::support::{binary::RunningBinary, netns::NamespacePair, process::BINARY};

#[test]
#[ignore = "needs root and iproute2 (ip netns); .ci/run runs it"]
fn two_nodes_on_one_lan_find_each_other_by_mdns_alone() {
    let lan = NamespacePair::create("mdns", 1);
    let start = |i: usize, extra: &[&str]| {
        let mut args = vec!["--listen", "/ip4/0.0.0.0/tcp/4100", "--heartbeat", "1s"];
        args.extend_from_slice(extra);
        RunningBinary::spawn(&["ip", "netns", "exec", &lan.names[i]], &args)
    };
    let first = start(0, &[]);
    let mut second = start(1, &["--stdin"]);
    let ids = [first.peer_id().to_owned(), second.peer_id().to_owned()];

    // Whoever queries after the other is up finds it by mDNS and dials; the other side may then learn of it from
    // that inbound connection first (identify), before its own next mDNS query. What matters: with no bootstrap
    // peers at all, both are connected and subscribed, and mDNS (with the right LAN address) is what brought that.
    let mut mdns_finds = 0;
    for (node, other, other_address) in [
        (&first, &ids[1], &lan.addresses[1]),
        (&second, &ids[0], &lan.addresses[0]),
    ] {
        let mdns_addresses = RefCell::new(None);
        let connected = Cell::new(false);
        let subscribed = Cell::new(false);
        node.wait_for("a connection to and a subscription of the other node", |l| {
            if l["peer"] == other.as_str() {
                if l["event"] == "discovered" && l["source"] == "mdns" {
                    *mdns_addresses.borrow_mut() = Some(l["addresses"].clone());
                }
                connected.set(connected.get() || l["event"] == "connected");
                subscribed.set(subscribed.get() || l["event"] == "subscribed");
            }
            connected.get() && subscribed.get()
        });
        if let Some(addresses) = mdns_addresses.into_inner() {
            mdns_finds += 1;
            assert!(
                addresses
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a.as_str().unwrap().contains(other_address.as_str())),
                "mDNS reported {addresses}"
            );
        }
    }
    assert!(mdns_finds >= 1, "neither node reported an mDNS discovery");

    // `swarmnode diagnose` (run inside the namespace, where the node's API is) shows mDNS on the LAN interface.
    let diagnose = std::process::Command::new("ip")
        .args(["netns", "exec", &lan.names[0], BINARY, "diagnose", "--json", "--api"])
        .arg(first.api.as_deref().unwrap())
        .output()
        .unwrap();
    assert!(
        diagnose.status.success(),
        "{}",
        String::from_utf8_lossy(&diagnose.stderr)
    );
    let diagnosis: serde_json::Value = serde_json::from_slice(&diagnose.stdout).unwrap();
    let lan_interface = diagnosis["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["addresses"]
                .as_array()
                .unwrap()
                .contains(&lan.addresses[0].as_str().into())
        })
        .unwrap_or_else(|| panic!("no interface with {}: {diagnosis}", lan.addresses[0]));
    assert_eq!(lan_interface["mdns"], true, "{diagnosis}");

    let stdin = second.stdin.as_mut().unwrap();
    writeln!(stdin, "found you on the LAN").unwrap();
    stdin.flush().unwrap();
    let message = first.wait_for("the message over the LAN", |l| l["event"] == "message");
    assert_eq!(message["data"], "found you on the LAN");
    assert_eq!(message["from"], ids[1].as_str());
}
