//! The web console: a page served at `/` by `baton serve` itself, to chat with live progress and
//! inline questions, browse threads and their timelines (fork from any checkpoint), and manage the
//! agent directory. Static HTML, CSS and vanilla ES modules compiled into the binary with
//! `include_str!` (no build step, nothing to install, nothing fetched from elsewhere); the page
//! talks only to the HTTP API every other client uses.
//!
//! Every response carries a strict Content-Security-Policy (scripts and styles from this origin
//! only, no inline script, no eval, no frames), so agent text the page shows can never run even
//! if a rendering bug let it into the DOM as markup. Not API operations, so not in the OpenAPI
//! document (as `/ws/chat` is not).

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppError;

/// The page's policy: everything from this origin only, no inline script or style, no eval, no
/// plugins, not framed, forms and `<base>` pinned.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The path prefix of the console's assets.
pub const ASSET_PREFIX: &str = "/console/";

/// What an asset is, which says its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKind {
    Html,
    Script,
    Style,
    Svg,
}

impl AssetKind {
    /// The `content-type` it is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            AssetKind::Html => "text/html; charset=utf-8",
            AssetKind::Script => "text/javascript; charset=utf-8",
            AssetKind::Style => "text/css; charset=utf-8",
            AssetKind::Svg => "image/svg+xml",
        }
    }
}

/// One embedded file of the console.
#[derive(Debug)]
pub struct Asset {
    /// Its name under `/console/` (the page itself is served at `/`).
    pub name: &'static str,
    pub kind: AssetKind,
    pub body: &'static str,
    /// A strong validator of `body`, computed at compile time, so a browser revalidates cheaply
    /// and never keeps a page of an older binary.
    pub etag: &'static str,
}

/// FNV-1a of the bytes, at compile time: the assets' validators.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"` + 16 hex digits + `"`, at compile time.
const fn quoted_hex(value: u64) -> [u8; 18] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = DIGITS[((value >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($name:literal, $kind:expr) => {{
        const BODY: &str = include_str!($name);
        const TAG: [u8; 18] = quoted_hex(fnv1a(BODY.as_bytes()));
        Asset {
            name: $name,
            kind: $kind,
            body: BODY,
            etag: match std::str::from_utf8(&TAG) {
                Ok(tag) => tag,
                Err(_) => panic!("an ETag is ASCII"),
            },
        }
    }};
}

/// The page, served at `/`.
pub static PAGE: Asset = asset!("index.html", AssetKind::Html);

/// Everything under `/console/`.
pub static ASSETS: [Asset; 8] = [
    asset!("console.css", AssetKind::Style),
    asset!("console.js", AssetKind::Script),
    asset!("api.js", AssetKind::Script),
    asset!("dom.js", AssetKind::Script),
    asset!("chat.js", AssetKind::Script),
    asset!("threads.js", AssetKind::Script),
    asset!("agents.js", AssetKind::Script),
    asset!("icon.svg", AssetKind::Svg),
];

/// `GET /`: the console's page.
pub async fn index(headers: HeaderMap) -> Response {
    serve(&PAGE, &headers)
}

/// `GET /console/{asset}`: a script, the style sheet or the icon; an unknown name is a 404 with
/// the JSON error body every other route answers.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Result<Response, AppError> {
    ASSETS
        .iter()
        .find(|asset| asset.name == name)
        .map(|asset| serve(asset, &headers))
        .ok_or_else(|| AppError::NotFound(format!("no console asset {name:?}")))
}

/// The asset with its headers, or 304 when the browser's copy is this one.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, asset.kind.content_type())],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    let fixed = [
        // Revalidated on every load (a 304 when unchanged): an upgraded binary's page is seen
        // at once, never mixed with an older script.
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_per_asset_and_are_quoted_hex() {
        let mut tags: Vec<&str> = ASSETS.iter().map(|a| a.etag).collect();
        tags.push(PAGE.etag);
        for tag in &tags {
            assert_eq!(tag.len(), 18, "{tag}");
            assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
        }
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len() + 1);
    }

    #[test]
    fn the_page_loads_only_its_own_scripts_and_no_inline_script() {
        assert!(PAGE.body.contains("src=\"/console/console.js\""));
        let code = ASSETS
            .iter()
            .chain([&PAGE])
            .filter(|a| a.kind != AssetKind::Svg);
        for asset in code {
            let outside = [
                "src=\"http",
                "href=\"http",
                "from \"http",
                "from 'http",
                "url(",
                "@import",
                "eval(",
                "new Function",
                "innerHTML",
                "insertAdjacentHTML",
                "document.write",
            ];
            for outside in outside {
                assert!(
                    !asset.body.contains(outside),
                    "{} refers elsewhere, evaluates text or parses it as HTML: {outside}",
                    asset.name
                );
            }
        }
    }
}
