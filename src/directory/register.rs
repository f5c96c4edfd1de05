//! Reading a card someone registers: an A2A Agent Card (v0.3 or v1.0 fields), Baton's own card,
//! or an original-system REST card, all turned into one `AgentCard`.

use serde_json::Value;

use crate::card::{AgentCard, AgentSkill, Protocol, RestEndpoint, SkillInput, slug};

/// Why a card was refused; the message goes back to whoever registered it, so it names the
/// field or the rule at fault.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("a card must be a JSON object")]
    NotAnObject,
    #[error("not an agent card: {0}")]
    A2aShape(#[source] serde_json::Error),
    #[error("not a REST agent card: {0}")]
    RestShape(#[source] serde_json::Error),
    #[error("builtin:// agents cannot be registered; they come with the binary")]
    Builtin,
    #[error("a REST agent card needs at least one endpoint")]
    NoEndpoints,
    #[error("endpoint {0:?} is not an http(s) URL")]
    EndpointUrl(String),
    /// A rule of `AgentCard::validate` (id, name, url, rating, price, skill ids).
    #[error("{0}")]
    Invalid(String),
}

/// Reads and validates a registered card; the error says what is wrong with it.
pub fn parse_card(value: Value) -> Result<AgentCard, CardError> {
    if !value.is_object() {
        return Err(CardError::NotAnObject);
    }
    let card = if is_rest_card(&value) {
        rest_card(value)?
    } else {
        a2a_card(value)?
    };
    card.validate().map_err(CardError::Invalid)?;
    Ok(card)
}

/// Original-system REST cards list their capabilities as strings and carry endpoints.
fn is_rest_card(value: &Value) -> bool {
    value.get("endpoints").is_some_and(Value::is_array)
        || value.get("capabilities").is_some_and(Value::is_array)
}

fn a2a_card(mut value: Value) -> Result<AgentCard, CardError> {
    let object = value.as_object_mut().ok_or(CardError::NotAnObject)?;
    // A v1.0 card names its endpoints in supportedInterfaces; v0.3 (and Baton) in url.
    if !object.contains_key("url")
        && let Some(url) = object
            .get("supportedInterfaces")
            .and_then(Value::as_array)
            .and_then(|list| {
                list.iter().find(|i| {
                    i.get("protocolBinding")
                        .and_then(Value::as_str)
                        .is_none_or(|b| b.eq_ignore_ascii_case("JSONRPC"))
                })
            })
            .and_then(|i| i.get("url"))
            .cloned()
    {
        object.insert("url".to_owned(), url);
    }
    if !object.contains_key("protocolVersion")
        && let Some(version) = object
            .get("supportedInterfaces")
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .and_then(|i| i.get("protocolVersion"))
            .cloned()
    {
        object.insert("protocolVersion".to_owned(), version);
    }
    if !object.contains_key("id") {
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        object.insert("id".to_owned(), Value::String(slug(name)));
    }
    object
        .entry("description")
        .or_insert_with(|| Value::String(String::new()));
    let mut card: AgentCard = serde_json::from_value(value).map_err(CardError::A2aShape)?;
    if card.builtin_name().is_some() {
        return Err(CardError::Builtin);
    }
    if card.protocol == Protocol::Builtin {
        card.protocol = Protocol::A2a;
    }
    Ok(card)
}

fn rest_card(value: Value) -> Result<AgentCard, CardError> {
    #[derive(serde::Deserialize)]
    struct RestCard {
        id: String,
        name: String,
        #[serde(default)]
        description: String,
        #[serde(default)]
        capabilities: Vec<String>,
        #[serde(default)]
        price_per_call_usd: f64,
        #[serde(default)]
        rating: f64,
        #[serde(default)]
        endpoints: Vec<RestEndpoint>,
    }
    let rest: RestCard = serde_json::from_value(value.clone()).map_err(CardError::RestShape)?;
    if rest.endpoints.is_empty() {
        return Err(CardError::NoEndpoints);
    }
    for endpoint in &rest.endpoints {
        if !(endpoint.endpoint.starts_with("http://") || endpoint.endpoint.starts_with("https://"))
        {
            return Err(CardError::EndpointUrl(endpoint.endpoint.clone()));
        }
    }
    let skills = rest
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| AgentSkill {
            id: format!("endpoint-{i}"),
            name: if e.description.is_empty() {
                rest.name.clone()
            } else {
                e.description.clone()
            },
            description: e.description.clone(),
            tags: rest.capabilities.clone(),
            examples: Vec::new(),
            inputs: e
                .parameters
                .iter()
                .map(|p| SkillInput {
                    name: p.name.clone(),
                    description: if p.description.is_empty() {
                        p.name.clone()
                    } else {
                        p.description.clone()
                    },
                    required: p.required && p.default_value.is_none(),
                    value_type: Some(p.param_type.to_ascii_lowercase()),
                })
                .collect(),
            input_schema: None,
        })
        .collect();
    let mut extra = serde_json::Map::new();
    if let Value::Object(object) = value {
        for key in ["owner_id", "status", "public_key_pem"] {
            if let Some(v) = object.get(key) {
                extra.insert(key.to_owned(), v.clone());
            }
        }
    }
    Ok(AgentCard {
        id: rest.id,
        name: rest.name,
        description: rest.description,
        url: rest.endpoints[0].endpoint.clone(),
        version: "1.0.0".to_owned(),
        capabilities: Default::default(),
        default_input_modes: vec!["application/json".to_owned()],
        default_output_modes: vec!["application/json".to_owned()],
        skills,
        price_per_call_usd: rest.price_per_call_usd,
        rating: rest.rating,
        rating_count: 0,
        protocol: Protocol::Rest,
        protocol_version: None,
        endpoints: rest.endpoints,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_v1_a2a_card() {
        let card = parse_card(json!({
            "name": "Echo Agent", "description": "echoes", "version": "1.0.0",
            "supportedInterfaces": [{"url": "http://127.0.0.1:9/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            "capabilities": {"streaming": false}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
            "skills": [{"id": "echo", "name": "Echo", "description": "echo", "tags": ["echo"]}],
            "provider": {"organization": "x"}
        }))
        .expect("valid");
        assert_eq!(card.id, "echo-agent");
        assert_eq!(card.url, "http://127.0.0.1:9/a2a");
        assert_eq!(card.protocol, Protocol::A2a);
        assert_eq!(card.protocol_version.as_deref(), Some("1.0"));
        assert!(
            card.extra.contains_key("provider"),
            "unknown fields are kept"
        );
    }

    #[test]
    fn reads_a_rest_card() {
        let card = parse_card(json!({
            "id": "geo", "owner_id": "o1", "name": "Geo", "description": "geocoding",
            "capabilities": ["geocode", "maps"], "price_per_call_usd": 0.01, "status": "active",
            "endpoints": [{"endpoint": "http://127.0.0.1:9/geocode", "http_method": "GET", "description": "Geocode an address",
                           "parameters": [{"name": "address", "param_type": "string", "required": true, "description": "street address"}]}],
            "rating": 4.0, "public_key_pem": null
        }))
        .expect("valid");
        assert_eq!(card.protocol, Protocol::Rest);
        assert_eq!(card.skills[0].tags, ["geocode", "maps"]);
        assert!(card.skills[0].inputs[0].required);
        assert_eq!(card.extra["owner_id"], "o1");
    }

    #[test]
    fn refuses_bad_cards() {
        assert!(parse_card(json!([])).is_err());
        assert!(parse_card(json!({"name": "x"})).is_err(), "no url");
        assert!(parse_card(json!({"name": "x", "url": "builtin://weather"})).is_err());
        assert!(
            parse_card(json!({"id": "r", "name": "r", "capabilities": ["a"], "endpoints": []}))
                .is_err()
        );
        assert!(parse_card(json!({"name": "x", "url": "http://h", "rating": 9})).is_err());
    }
}
