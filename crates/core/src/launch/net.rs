//! The network a guest of a backend gets, with the endpoint the network workloads and the
//! host peer use: a tap device in a network namespace (kernel guests: QEMU, UML) or a veth
//! pair between two namespaces (namespace and gVisor guests). Both need root; the namespaces
//! live as long as the guest ([`Attached::keep`]).

use std::path::PathBuf;

use crate::devices::{Attached, NetEndpoint};
use crate::netns;

/// A tap device in a namespace of its own for a kernel guest that is started inside it.
/// Returns the command prefix that enters the namespace; the endpoint and the namespace go to
/// `attached`.
pub fn tap(label: &str, attached: &mut Attached) -> Result<Vec<String>, String> {
    let ns = netns::tap_namespace(label)?;
    let prefix = ns.enter_prefix();
    attached.net = Some(NetEndpoint::guest(netns::GUEST_ADDR, Some(ns.path())));
    attached.keep.push(Box::new(ns));
    Ok(prefix)
}

/// A veth pair between a guest's namespace and a host-side one. Returns the guest side's
/// namespace, which the guest joins; the endpoint (reached from the host side) and the pair go
/// to `attached`.
pub fn veth(label: &str, attached: &mut Attached) -> Result<PathBuf, String> {
    let pair = netns::VethPair::create(label)?;
    let guest_ns = pair.guest.path();
    attached.net = Some(NetEndpoint::guest(
        netns::GUEST_ADDR,
        Some(pair.host.path()),
    ));
    attached.keep.push(Box::new(pair));
    Ok(guest_ns)
}
