//! Agent cards: the A2A Agent Card fields Baton uses, plus the original system's price and rating.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The URL scheme of the demo agents compiled into the binary: `builtin://NAME`.
pub const BUILTIN_SCHEME: &str = "builtin://";

/// A card in the directory. Field names follow the A2A Agent Card (camelCase) where A2A defines
/// them; `id`, `price_per_call_usd` and `rating` come from the original system's cards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentCard {
    /// Stable directory key; unique.
    pub id: String,
    pub name: String,
    pub description: String,
    /// Where the agent is reached; `builtin://NAME` for the demo agents inside the binary.
    pub url: String,
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default)]
    pub capabilities: AgentCapabilities,
    #[serde(rename = "defaultInputModes", default = "text_modes")]
    pub default_input_modes: Vec<String>,
    #[serde(rename = "defaultOutputModes", default = "text_modes")]
    pub default_output_modes: Vec<String>,
    #[serde(default)]
    pub skills: Vec<AgentSkill>,
    #[serde(default)]
    pub price_per_call_usd: f64,
    /// Mean user rating, 0 to 5.
    #[serde(default)]
    pub rating: f64,
    /// How many ratings the mean is over.
    #[serde(default)]
    pub rating_count: u64,
    /// How Baton talks to the agent.
    #[serde(default)]
    pub protocol: Protocol,
    /// A2A protocol version the card declares (`0.3.0`, `1.0`, …), when it does.
    #[serde(
        rename = "protocolVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol_version: Option<String>,
    /// The endpoints of an original-system REST agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<RestEndpoint>,
    /// Every other field the card was registered with, kept as given.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The wire protocol of an agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// A2A JSON-RPC (v1.0, falling back to v0.3 when the card says so).
    #[default]
    A2a,
    /// An original-system REST agent: one HTTP call per endpoint.
    Rest,
    /// An MCP server's tools over streamable HTTP.
    Mcp,
    /// A demo agent inside the binary (`builtin://NAME`).
    Builtin,
}

/// An endpoint of an original-system REST agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RestEndpoint {
    pub endpoint: String,
    #[serde(default)]
    pub http_method: HttpMethod,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub parameters: Vec<RestParameter>,
}

/// How a REST endpoint takes its parameters: GET as the query, POST as a JSON body. Cards spell
/// it in any case (`"post"` too); Baton writes it upper-case, and refuses anything else when the
/// card is read, so a card never promises a method Baton would not use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Post,
}

impl<'de> Deserialize<'de> for HttpMethod {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name.eq_ignore_ascii_case("GET") {
            Ok(HttpMethod::Get)
        } else if name.eq_ignore_ascii_case("POST") {
            Ok(HttpMethod::Post)
        } else {
            Err(serde::de::Error::custom(format!(
                "http_method must be GET or POST, not {name:?}"
            )))
        }
    }
}

/// A parameter of a REST endpoint: GET sends parameters as the query, POST as a JSON body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RestParameter {
    pub name: String,
    #[serde(default = "default_param_type")]
    pub param_type: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default_value: Option<serde_json::Value>,
    #[serde(default)]
    pub description: String,
}

fn default_param_type() -> String {
    "string".to_owned()
}

/// The A2A optional protocol features an agent supports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentCapabilities {
    #[serde(default)]
    pub streaming: bool,
    #[serde(rename = "pushNotifications", default)]
    pub push_notifications: bool,
}

/// One thing an agent can do. `inputs` is Baton's extension: what the skill needs before it can
/// run, so the planner can ask the user for a missing one instead of calling the agent blind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentSkill {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub examples: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<SkillInput>,
    /// The JSON Schema of an MCP tool's arguments (types for the values the planner finds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
}

/// A named input of a skill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SkillInput {
    /// Recognised names (`location`, `amount`, `from_currency`, `to_currency`, `target_language`,
    /// `text`, `topic`) are extracted from plain words; any other name from `name: value`.
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub required: bool,
    /// The value's type (`string`, `integer`, `number`, `boolean`), when the card says.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
}

fn default_version() -> String {
    "1.0.0".to_owned()
}

fn text_modes() -> Vec<String> {
    vec!["text/plain".to_owned()]
}

/// Highest rating a card can have or be given (ratings are stars, 0 to 5).
pub const MAX_RATING: f64 = 5.0;

impl AgentCard {
    /// Adds one rating to the running mean; a rating given at registration counts as the first.
    /// The SQL stores do the same arithmetic in one statement (`store::sql::rate_agent`).
    pub fn add_rating(&mut self, rating: f64) {
        if self.rating_count == 0 && self.rating > 0.0 {
            self.rating_count = 1;
        }
        let count = self.rating_count as f64;
        self.rating = ((self.rating * count + rating) / (count + 1.0)).clamp(0.0, MAX_RATING);
        self.rating_count += 1;
    }

    /// The demo agent a `builtin://NAME` card names, so callers need not know the URL scheme.
    pub fn builtin_name(&self) -> Option<&str> {
        self.url.strip_prefix(BUILTIN_SCHEME)
    }

    /// The skill with this id.
    pub fn skill(&self, id: &str) -> Option<&AgentSkill> {
        self.skills.iter().find(|s| s.id == id)
    }

    /// Checks what the directory relies on; the reason goes back to whoever registered the card.
    pub fn validate(&self) -> Result<(), String> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 128
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
        if !id_ok {
            return Err("id must be 1-128 characters of [A-Za-z0-9._:-]".into());
        }
        if self.name.trim().is_empty() {
            return Err("name must not be blank".into());
        }
        let url_ok = match self.protocol {
            Protocol::Builtin => self.url.starts_with("builtin://"),
            Protocol::A2a | Protocol::Rest | Protocol::Mcp => {
                self.url.starts_with("http://") || self.url.starts_with("https://")
            }
        };
        if !url_ok {
            return Err(format!(
                "url {:?} must be an http:// or https:// URL",
                self.url
            ));
        }
        if !(0.0..=5.0).contains(&self.rating) {
            return Err("rating must be between 0 and 5".into());
        }
        if !(self.price_per_call_usd >= 0.0 && self.price_per_call_usd.is_finite()) {
            return Err("price_per_call_usd must be a non-negative number".into());
        }
        if self.skills.iter().any(|s| s.id.trim().is_empty()) {
            return Err("every skill needs an id".into());
        }
        Ok(())
    }
}

/// A directory id from a name: lower-case ASCII words joined by dashes, so that the id goes into
/// a URL path as it is.
pub fn slug(name: &str) -> String {
    slug_with(name, Letters::Ascii, 128)
}

/// Which letters a slug keeps; every other character separates words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Letters {
    /// ASCII letters and digits: for ids that go into URLs.
    Ascii,
    /// Letters and digits of any script: for labels people read ("météo-paris").
    Any,
}

/// The words of `text` in lower case, joined by dashes and cut at `max_chars` characters.
pub fn slug_with(text: &str, letters: Letters, max_chars: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let kept = match letters {
            Letters::Ascii => c.is_ascii_alphanumeric(),
            Letters::Any => c.is_alphanumeric(),
        };
        if kept {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_methods_read_in_any_case_and_write_upper_case() {
        let read = |m: &str| serde_json::from_value::<HttpMethod>(serde_json::json!(m));
        assert_eq!(read("get").ok(), Some(HttpMethod::Get));
        assert_eq!(read("Post").ok(), Some(HttpMethod::Post));
        assert!(
            read("PUT")
                .err()
                .is_some_and(|e| e.to_string().contains("GET or POST"))
        );
        assert_eq!(
            serde_json::to_value(HttpMethod::Post).ok(),
            Some(serde_json::json!("POST"))
        );
        let endpoint: RestEndpoint =
            serde_json::from_value(serde_json::json!({"endpoint": "http://x/y"}))
                .expect("an endpoint");
        assert_eq!(endpoint.http_method, HttpMethod::Get, "GET by default");
    }
}
