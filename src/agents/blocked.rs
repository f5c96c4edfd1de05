//! Which addresses and host names outbound requests never reach unless the operator names the
//! host (`--outbound-allow`): link-local and cloud-metadata addresses, "this network", the
//! unspecified address, multicast and broadcast, and the metadata services' well-known names.
//! Agents, webhooks and discovered cards are URLs users choose; without this, a card could point
//! Baton at the cloud's metadata service and read its credentials back through an agent's answer.
//! Loopback and private ranges stay allowed: agents usually run beside Baton.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address or name is not called; the text completes "… is {reason}".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedReason {
    /// A cloud provider's metadata service (169.254.169.254, fd00:ec2::254, 100.100.100.200).
    CloudMetadata,
    /// The well-known name of a metadata service (`metadata.google.internal`).
    MetadataName,
    /// 169.254.0.0/16 or fe80::/10: never a routed agent, often a host's own services.
    LinkLocal,
    /// 0.0.0.0/8: "this network", which Linux connects to the host itself.
    ThisNetwork,
    /// `::`, which like 0.0.0.0 reaches the host itself.
    Unspecified,
    /// 224.0.0.0/4 or ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
}

impl fmt::Display for BlockedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockedReason::CloudMetadata => "a cloud metadata address",
            BlockedReason::MetadataName => "a cloud metadata host name",
            BlockedReason::LinkLocal => "a link-local address",
            BlockedReason::ThisNetwork => "a \"this network\" address (0.0.0.0/8)",
            BlockedReason::Unspecified => "the unspecified address",
            BlockedReason::Multicast => "a multicast address",
            BlockedReason::Broadcast => "the broadcast address",
        })
    }
}

/// Host names of metadata services, as resolvers inside clouds answer them (lower case, no
/// trailing dot). They resolve to link-local addresses, which the resolver refuses anyway; the
/// names are refused before any lookup so the error says what they are.
const METADATA_NAMES: [&str; 6] = [
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// Alibaba Cloud's metadata service, outside the link-local range.
const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);

/// The metadata service of AWS, Azure, GCP, OpenStack and most others.
const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// AWS's metadata service over IPv6.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// Why `address` is not called, or `None` for an address Baton may call.
pub fn blocked_address(address: IpAddr) -> Option<BlockedReason> {
    match address {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(address: Ipv4Addr) -> Option<BlockedReason> {
    if address == METADATA_V4 || address == ALIBABA_METADATA {
        Some(BlockedReason::CloudMetadata)
    } else if address.is_link_local() {
        Some(BlockedReason::LinkLocal)
    } else if address.octets()[0] == 0 {
        Some(BlockedReason::ThisNetwork)
    } else if address.is_broadcast() {
        Some(BlockedReason::Broadcast)
    } else if address.is_multicast() {
        Some(BlockedReason::Multicast)
    } else {
        None
    }
}

fn blocked_v6(address: Ipv6Addr) -> Option<BlockedReason> {
    if address == AWS_METADATA_V6 {
        return Some(BlockedReason::CloudMetadata);
    }
    if address.is_unspecified() {
        return Some(BlockedReason::Unspecified);
    }
    if address.is_loopback() {
        return None;
    }
    if let Some(v4) = embedded_v4(address) {
        return blocked_v4(v4);
    }
    if address.segments()[0] & 0xffc0 == 0xfe80 {
        Some(BlockedReason::LinkLocal)
    } else if address.is_multicast() {
        Some(BlockedReason::Multicast)
    } else {
        None
    }
}

/// The IPv4 address an IPv6 one carries where the host would reach that IPv4 address: mapped
/// (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`, deprecated but still parsed) and the NAT64
/// well-known prefix (`64:ff9b::a.b.c.d`).
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = address.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0, 0, _, _]
        | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        _ => None,
    }
}

/// Whether `host` (lower case, without a trailing dot) names a metadata service.
pub fn is_metadata_name(host: &str) -> bool {
    METADATA_NAMES.contains(&host)
}

/// A host as written in a URL or an `--outbound-allow` entry, made comparable: lower case,
/// without IPv6 brackets or the trailing dot of a fully qualified name.
pub fn normalized_host(host: &str) -> String {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(address: &str) -> Option<BlockedReason> {
        blocked_address(address.parse().expect("an address"))
    }

    #[test]
    fn metadata_link_local_and_unroutable_addresses_are_blocked() {
        for (address, expected) in [
            ("169.254.169.254", BlockedReason::CloudMetadata),
            ("100.100.100.200", BlockedReason::CloudMetadata),
            ("fd00:ec2::254", BlockedReason::CloudMetadata),
            ("169.254.0.1", BlockedReason::LinkLocal),
            ("169.254.170.2", BlockedReason::LinkLocal),
            ("fe80::1", BlockedReason::LinkLocal),
            ("febf::1", BlockedReason::LinkLocal),
            ("0.0.0.0", BlockedReason::ThisNetwork),
            ("0.1.2.3", BlockedReason::ThisNetwork),
            ("::", BlockedReason::Unspecified),
            ("224.0.0.1", BlockedReason::Multicast),
            ("239.255.255.250", BlockedReason::Multicast),
            ("ff02::1", BlockedReason::Multicast),
            ("255.255.255.255", BlockedReason::Broadcast),
            ("::ffff:169.254.169.254", BlockedReason::CloudMetadata),
            ("::ffff:169.254.1.1", BlockedReason::LinkLocal),
            ("::169.254.169.254", BlockedReason::CloudMetadata),
            ("64:ff9b::169.254.169.254", BlockedReason::CloudMetadata),
            ("::ffff:0.0.0.0", BlockedReason::ThisNetwork),
        ] {
            assert_eq!(reason(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn loopback_private_and_public_addresses_are_allowed() {
        for address in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.5",
            "172.16.0.1",
            "192.168.1.10",
            "100.64.0.1",
            "100.100.100.201",
            "169.255.0.1",
            "8.8.8.8",
            "::1",
            "fd00::1",
            "fc00::5",
            "fec0::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(reason(address), None, "{address}");
        }
    }

    #[test]
    fn metadata_names_are_known_whatever_their_spelling() {
        for host in ["Metadata.Google.Internal.", "metadata", "[FD00:EC2::254]"] {
            let host = normalized_host(host);
            assert!(is_metadata_name(&host) || host == "fd00:ec2::254", "{host}");
        }
        assert!(!is_metadata_name("metadata.example.com"));
        assert!(!is_metadata_name("agents.internal"));
    }
}
