//! Which agent URLs Baton may call. By default every http(s) URL (agents usually run beside
//! Baton, on loopback or a private network); `--agent-url-allow` narrows that to a list.

/// Why the outbound URL policy refuses a URL; the message goes back to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("{0} is not an http(s) URL")]
    NotHttp(String),
    #[error("{0} is not allowed by --agent-url-allow")]
    NotAllowed(String),
}

/// Which URLs Baton may call: agents are registered by users, so without a limit a card could
/// point Baton at any host its network reaches.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    /// Empty: allow all. Otherwise each entry is a URL prefix (`http://10.0.0.5:9000/`) or a
    /// host, optionally with a port (`agents.internal`, `127.0.0.1:9000`).
    allow: Vec<String>,
}

impl UrlPolicy {
    /// A policy allowing only `allow` (all when empty).
    pub fn new(allow: Vec<String>) -> Self {
        UrlPolicy {
            allow: allow
                .into_iter()
                .map(|a| a.trim().to_ascii_lowercase())
                .filter(|a| !a.is_empty())
                .collect(),
        }
    }

    /// Whether `url` may be called; the error says why not.
    pub fn check(&self, url: &str) -> Result<(), UrlRefused> {
        let lower = url.to_ascii_lowercase();
        let Some(rest) = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
        else {
            return Err(UrlRefused::NotHttp(url.to_owned()));
        };
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
    fn allows_everything_by_default() {
        assert!(UrlPolicy::default().check("http://127.0.0.1:9/x").is_ok());
        assert!(UrlPolicy::default().check("ftp://x").is_err());
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
    }
}
