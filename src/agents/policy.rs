//! Which URLs Baton may call (agents, discovered cards, webhooks). By default every http(s) URL
//! on loopback, private and public addresses (agents usually run beside Baton), but never a
//! link-local or cloud-metadata address or name (`blocked`) unless `--outbound-allow` names the
//! host; `--agent-url-allow` narrows the rest to a list. The URL's own host is checked here,
//! before any connection; the addresses a name resolves to are checked by the resolver
//! (`resolver.rs`) and every redirect's target by `http::redirect_policy`.

use std::net::IpAddr;
use std::sync::Arc;

use reqwest::Url;

use super::blocked::{BlockedReason, blocked_address, is_metadata_name, normalized_host};

/// Why the outbound URL policy refuses a URL; the message goes back to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("{0} is not an http(s) URL")]
    NotHttp(String),
    #[error("{0} is not a valid URL")]
    Unparsable(String),
    #[error("{0} is not allowed by --agent-url-allow")]
    NotAllowed(String),
    /// The URL's host is a blocked address or a metadata service's name.
    #[error(
        "{url} is refused: {host} is {reason}, which Baton does not call unless --outbound-allow names the host"
    )]
    Blocked {
        url: String,
        host: String,
        reason: BlockedReason,
    },
    /// Every address the host's name resolved to is blocked.
    #[error(
        "{host} is refused: it resolves to {address}, {reason}, which Baton does not call unless --outbound-allow names the host"
    )]
    ResolvesToBlocked {
        host: String,
        address: IpAddr,
        reason: BlockedReason,
    },
    /// An answer redirected to a URL the policy refuses.
    #[error("refused to follow a redirect: {0}")]
    Redirect(Box<UrlRefused>),
}

impl UrlRefused {
    /// The refusal that stopped a request, wherever it sits in the error's chain (the resolver's
    /// and the redirect policy's refusals come back wrapped in reqwest's and hyper's errors).
    pub fn found_in<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e UrlRefused> {
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(refused) = error.downcast_ref::<UrlRefused>() {
                return Some(refused);
            }
            current = error.source();
        }
        None
    }
}

/// Hosts the operator lets through although they are blocked (`--outbound-allow`), compared as
/// written in the URL after normalizing (lower case, no brackets or trailing dot; addresses as
/// addresses, so `[FD00:EC2::254]` matches `fd00:ec2::254`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundAllow {
    names: Arc<[String]>,
    addresses: Arc<[IpAddr]>,
}

impl OutboundAllow {
    /// The hosts in `hosts` (names or addresses; blank entries ignored).
    pub fn new(hosts: impl IntoIterator<Item = String>) -> Self {
        let (mut names, mut addresses) = (Vec::new(), Vec::new());
        for host in hosts {
            let host = normalized_host(&host);
            if host.is_empty() {
                continue;
            }
            match host.parse::<IpAddr>() {
                Ok(address) => addresses.push(address),
                Err(_) => names.push(host),
            }
        }
        OutboundAllow {
            names: names.into(),
            addresses: addresses.into(),
        }
    }

    /// Whether the operator named this host (a name or an address, as written).
    pub fn names(&self, host: &str) -> bool {
        let host = normalized_host(host);
        match host.parse::<IpAddr>() {
            Ok(address) => self.addresses.contains(&address),
            Err(_) => self.names.contains(&host),
        }
    }
}

/// Which URLs Baton may call: agents are registered by users, so without a limit a card could
/// point Baton at any host its network reaches.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    /// Empty: allow all. Otherwise each entry is a URL prefix (`http://10.0.0.5:9000/`) or a
    /// host, optionally with a port (`agents.internal`, `127.0.0.1:9000`).
    allow: Vec<String>,
    /// Blocked hosts let through by name.
    outbound: OutboundAllow,
}

impl UrlPolicy {
    /// A policy allowing only `allow` (all when empty), blocked hosts excepted.
    pub fn new(allow: Vec<String>) -> Self {
        UrlPolicy {
            allow: allow
                .into_iter()
                .map(|a| a.trim().to_ascii_lowercase())
                .filter(|a| !a.is_empty())
                .collect(),
            outbound: OutboundAllow::default(),
        }
    }

    /// The same policy, letting the blocked hosts `outbound` names through.
    pub fn with_outbound_allow(self, outbound: OutboundAllow) -> Self {
        UrlPolicy { outbound, ..self }
    }

    /// The blocked hosts the operator lets through (the resolver needs them too).
    pub fn outbound_allow(&self) -> &OutboundAllow {
        &self.outbound
    }

    /// Whether `url` may be called; the error says why not. A host given as a name is checked
    /// again against what it resolves to when it is called.
    pub fn check(&self, url: &str) -> Result<(), UrlRefused> {
        let lower = url.to_ascii_lowercase();
        let Some(rest) = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
        else {
            return Err(UrlRefused::NotHttp(url.to_owned()));
        };
        let parsed = Url::parse(url).map_err(|_| UrlRefused::Unparsable(url.to_owned()))?;
        self.check_host(url, &parsed)?;
        if self.allow.is_empty() {
            return Ok(());
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let host = host_of(authority);
        let allowed = self.allow.iter().any(|a| {
            if a.starts_with("http://") || a.starts_with("https://") {
                lower.starts_with(a.as_str())
            } else {
                a == authority || a == host
            }
        });
        if allowed {
            Ok(())
        } else {
            Err(UrlRefused::NotAllowed(url.to_owned()))
        }
    }

    /// Refuses a URL whose host (as the URL parser reads it: `http://2852039166/` is
    /// 169.254.169.254) is a blocked address or a metadata name, unless the operator named it.
    fn check_host(&self, url: &str, parsed: &Url) -> Result<(), UrlRefused> {
        // The parser writes an address in its canonical form (`[…]` around IPv6), so what
        // parses as an address here is one, however the URL spelled it.
        let Some(host) = parsed.host_str().map(normalized_host) else {
            return Err(UrlRefused::Unparsable(url.to_owned()));
        };
        let reason = match host.parse::<IpAddr>() {
            Ok(address) => blocked_address(address),
            Err(_) => is_metadata_name(&host).then_some(BlockedReason::MetadataName),
        };
        match reason {
            Some(reason) if !self.outbound.names(&host) => Err(UrlRefused::Blocked {
                url: url.to_owned(),
                host,
                reason,
            }),
            _ => Ok(()),
        }
    }
}

fn host_of(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_everything_but_blocked_hosts_by_default() {
        assert!(UrlPolicy::default().check("http://127.0.0.1:9/x").is_ok());
        assert!(UrlPolicy::default().check("http://10.1.2.3/x").is_ok());
        assert!(UrlPolicy::default().check("http://[::1]:9/x").is_ok());
        assert!(UrlPolicy::default().check("ftp://x").is_err());
        assert!(matches!(
            UrlPolicy::default().check("http://"),
            Err(UrlRefused::Unparsable(_))
        ));
    }

    #[test]
    fn refuses_metadata_and_link_local_hosts_in_every_spelling() {
        let policy = UrlPolicy::default();
        for (url, reason) in [
            (
                "http://169.254.169.254/latest/meta-data/",
                BlockedReason::CloudMetadata,
            ),
            ("http://2852039166/", BlockedReason::CloudMetadata),
            ("http://0xa9.0xfe.0xa9.0xfe/", BlockedReason::CloudMetadata),
            (
                "http://[::ffff:169.254.169.254]/",
                BlockedReason::CloudMetadata,
            ),
            ("http://[fd00:ec2::254]/", BlockedReason::CloudMetadata),
            ("http://100.100.100.200/", BlockedReason::CloudMetadata),
            ("http://169.254.1.2:8080/", BlockedReason::LinkLocal),
            ("http://[fe80::1]/", BlockedReason::LinkLocal),
            ("http://0.0.0.0:9/", BlockedReason::ThisNetwork),
            ("http://[::]:9/", BlockedReason::Unspecified),
            ("http://224.0.0.1/", BlockedReason::Multicast),
            ("http://255.255.255.255/", BlockedReason::Broadcast),
            (
                "http://Metadata.Google.Internal./computeMetadata/v1/",
                BlockedReason::MetadataName,
            ),
            ("https://metadata/", BlockedReason::MetadataName),
            ("http://user@metadata.goog/", BlockedReason::MetadataName),
        ] {
            match policy.check(url) {
                Err(UrlRefused::Blocked { reason: r, .. }) => assert_eq!(r, reason, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_operator_lets_blocked_hosts_through_by_name() {
        let policy = UrlPolicy::default().with_outbound_allow(OutboundAllow::new([
            "169.254.169.254".to_owned(),
            "METADATA.google.internal".to_owned(),
            "[FD00:EC2::254]".to_owned(),
            " ".to_owned(),
        ]));
        assert!(policy.check("http://169.254.169.254/latest/").is_ok());
        assert!(
            policy.check("http://2852039166/").is_ok(),
            "the same address"
        );
        assert!(policy.check("http://metadata.google.internal./x").is_ok());
        assert!(policy.check("http://[fd00:ec2::254]/").is_ok());
        assert!(policy.check("http://169.254.169.253/").is_err());
        assert!(policy.check("http://metadata/").is_err());
    }

    #[test]
    fn restricts_to_hosts_and_prefixes() {
        let p = UrlPolicy::new(vec![
            "agents.internal".into(),
            "http://127.0.0.1:9000/a2a".into(),
            "10.0.0.5:81".into(),
        ]);
        assert!(p.check("https://agents.internal:8443/x").is_ok());
        assert!(p.check("http://127.0.0.1:9000/a2a/weather").is_ok());
        assert!(p.check("http://127.0.0.1:9001/a2a").is_err());
        assert!(p.check("http://10.0.0.5:81/").is_ok());
        assert!(p.check("http://10.0.0.5:82/").is_err());
        assert!(p.check("http://evil@agents.internal.evil.com/").is_err());
        let listed = UrlPolicy::new(vec!["169.254.169.254".into()]);
        assert!(
            matches!(
                listed.check("http://169.254.169.254/"),
                Err(UrlRefused::Blocked { .. })
            ),
            "--agent-url-allow does not unblock: only --outbound-allow does"
        );
    }
}
