//! mDNS on a LAN: two nodes with no bootstrap peers, each in its own network namespace on one virtual link, find
//! each other through mDNS alone, connect, and gossip.

mod support;

use std::{
    cell::{Cell, RefCell},
    io::Write,
};

use support::{binary::RunningBinary, netns::NamespacePair};

#[test]
fn two_nodes_on_one_lan_find_each_other_by_mdns_alone() {
    let Some(lan) = NamespacePair::create("mdns", 1) else {
        return;
    };
    let start = |i: usize, extra: &[&str]| {
        let mut args = vec!["--listen", "/ip4/0.0.0.0/tcp/4100", "--heartbeat", "1s"];
        args.extend_from_slice(extra);
        RunningBinary::spawn("ip", &["netns", "exec", &lan.names[i]], &args)
    };
    let first = start(0, &[]);
    let mut second = start(1, &["--stdin"]);
    let ids = [first.peer_id.clone(), second.peer_id.clone()];

    for (node, other, other_address) in [
        (&first, &ids[1], &lan.addresses[1]),
        (&second, &ids[0], &lan.addresses[0]),
    ] {
        // Either side may dial first, so these arrive in any order.
        let mdns_addresses = RefCell::new(None);
        let connected = Cell::new(false);
        let subscribed = Cell::new(false);
        node.wait_for(
            "mDNS discovery of, connection to and subscription of the other node",
            |l| {
                if l["peer"] == other.as_str() {
                    if l["event"] == "discovered" && l["source"] == "mdns" {
                        *mdns_addresses.borrow_mut() = Some(l["addresses"].clone());
                    }
                    connected.set(connected.get() || l["event"] == "connected");
                    subscribed.set(subscribed.get() || l["event"] == "subscribed");
                }
                connected.get() && subscribed.get() && mdns_addresses.borrow().is_some()
            },
        );
        let addresses = mdns_addresses.into_inner().unwrap();
        assert!(
            addresses
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a.as_str().unwrap().contains(other_address.as_str())),
            "mDNS reported {addresses}"
        );
    }

    let stdin = second.stdin.as_mut().unwrap();
    writeln!(stdin, "found you on the LAN").unwrap();
    stdin.flush().unwrap();
    let message = first.wait_for("the message over the LAN", |l| l["event"] == "message");
    assert_eq!(message["data"], "found you on the LAN");
    assert_eq!(message["from"], ids[1].as_str());
}
