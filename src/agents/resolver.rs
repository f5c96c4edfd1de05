//! `GuardedResolver`: the DNS resolver of Baton's outbound HTTP clients, which refuses the
//! addresses `blocked` names. Checking a URL's host is not enough: `agent.example` may resolve
//! to 169.254.169.254, so the check must hold on the addresses the connection will use, which
//! only the resolver sees. (reqwest does not call a resolver for a URL whose host is an address;
//! those are checked by `UrlPolicy::check` before the request, and on every redirect.)

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::blocked::{BlockedReason, blocked_address, is_metadata_name, normalized_host};
use super::policy::{OutboundAllow, UrlRefused};

/// How a name becomes addresses: the system resolver in Baton, a fixed table in tests.
pub type Lookup =
    Arc<dyn Fn(String) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> + Send + Sync>;

/// Resolves with `lookup` and keeps only the addresses Baton may call (all of them for a host
/// the operator named in `--outbound-allow`).
#[derive(Clone)]
pub struct GuardedResolver {
    allow: OutboundAllow,
    lookup: Lookup,
}

impl GuardedResolver {
    /// Over the system resolver (`getaddrinfo`, through tokio's `lookup_host`).
    pub fn system(allow: OutboundAllow) -> Self {
        Self::with_lookup(
            allow,
            Arc::new(|host: String| {
                Box::pin(async move {
                    // Port 0: reqwest puts the URL's (or the scheme's) port on each address.
                    Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect())
                })
            }),
        )
    }

    /// Over another lookup (tests resolve names to blocked addresses without touching DNS).
    pub fn with_lookup(allow: OutboundAllow, lookup: Lookup) -> Self {
        GuardedResolver { allow, lookup }
    }

    /// Resolves `host` and keeps the addresses that may be called; refused when none is left
    /// because every one is blocked, or when the name itself is a metadata service's.
    pub async fn admitted(
        &self,
        host: &str,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let named = self.allow.names(host);
        let normalized = normalized_host(host);
        if !named && is_metadata_name(&normalized) {
            return Err(Box::new(UrlRefused::Blocked {
                url: host.to_owned(),
                host: normalized,
                reason: BlockedReason::MetadataName,
            }));
        }
        let resolved = (self.lookup)(host.to_owned()).await?;
        if named {
            return Ok(resolved);
        }
        let mut first_blocked = None;
        let admitted: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|address| match blocked_address(address.ip()) {
                Some(reason) => {
                    first_blocked.get_or_insert((address.ip(), reason));
                    false
                }
                None => true,
            })
            .collect();
        match first_blocked {
            Some((address, reason)) if admitted.is_empty() => {
                Err(Box::new(UrlRefused::ResolvesToBlocked {
                    host: normalized,
                    address,
                    reason,
                }))
            }
            _ => Ok(admitted),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let admitted = resolver.admitted(name.as_str()).await?;
            Ok(Box::new(admitted.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A resolver whose lookups come from `table` (a name absent from it does not resolve).
    fn resolver(allow: &[&str], table: &[(&str, &[&str])]) -> GuardedResolver {
        let table: HashMap<String, Vec<SocketAddr>> = table
            .iter()
            .map(|(name, addresses)| {
                let addresses = addresses
                    .iter()
                    .map(|a| SocketAddr::new(a.parse().expect("an address"), 0))
                    .collect();
                ((*name).to_owned(), addresses)
            })
            .collect();
        let table = Arc::new(table);
        GuardedResolver::with_lookup(
            OutboundAllow::new(allow.iter().map(|a| (*a).to_owned())),
            Arc::new(move |host: String| {
                let found = table.get(&host).cloned();
                Box::pin(async move {
                    found.ok_or_else(|| std::io::Error::other(format!("{host} does not resolve")))
                })
            }),
        )
    }

    fn refusal(
        error: Box<dyn std::error::Error + Send + Sync>,
    ) -> Result<UrlRefused, Box<dyn std::error::Error + Send + Sync>> {
        error.downcast::<UrlRefused>().map(|r| *r)
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_to_blocked_addresses_is_refused() {
        let resolver = resolver(
            &[],
            &[
                ("rebound.example", &["169.254.169.254"]),
                ("mapped.example", &["::ffff:169.254.169.254", "fe80::1"]),
            ],
        );
        let error = resolver
            .admitted("rebound.example")
            .await
            .expect_err("refused");
        assert_eq!(
            refusal(error).expect("a refusal"),
            UrlRefused::ResolvesToBlocked {
                host: "rebound.example".into(),
                address: "169.254.169.254".parse().expect("address"),
                reason: BlockedReason::CloudMetadata,
            }
        );
        let error = resolver
            .admitted("mapped.example")
            .await
            .expect_err("refused");
        assert!(matches!(
            refusal(error),
            Ok(UrlRefused::ResolvesToBlocked {
                reason: BlockedReason::CloudMetadata,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn blocked_addresses_are_dropped_and_the_others_kept() {
        let resolver = resolver(
            &[],
            &[(
                "mixed.example",
                &["169.254.169.254", "10.0.0.7", "fe80::2", "::1"],
            )],
        );
        let admitted = resolver.admitted("mixed.example").await.expect("admitted");
        let ips: Vec<String> = admitted.iter().map(|a| a.ip().to_string()).collect();
        assert_eq!(ips, ["10.0.0.7", "::1"]);
    }

    #[tokio::test]
    async fn metadata_names_are_refused_before_any_lookup() {
        // Not in the table: a lookup would fail with "does not resolve", not a refusal.
        let error = resolver(&[], &[])
            .admitted("Metadata.Google.Internal.")
            .await
            .expect_err("refused");
        assert!(matches!(
            refusal(error),
            Ok(UrlRefused::Blocked {
                reason: BlockedReason::MetadataName,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_host_the_operator_names_resolves_to_whatever_it_resolves_to() {
        let resolver = resolver(
            &["imds.internal", "metadata.google.internal"],
            &[
                ("imds.internal", &["169.254.169.254"]),
                ("metadata.google.internal", &["169.254.169.254"]),
            ],
        );
        for host in ["imds.internal", "metadata.google.internal"] {
            let admitted = resolver.admitted(host).await.expect("admitted");
            assert_eq!(admitted.len(), 1, "{host}");
        }
    }

    #[tokio::test]
    async fn a_failed_lookup_is_not_a_refusal() {
        let error = resolver(&[], &[])
            .admitted("nowhere.example")
            .await
            .expect_err("does not resolve");
        assert!(refusal(error).is_err());
    }
}
