//! What produced a checkpoint: a node of the flow, or a run's first write (a new turn, a
//! takeover of a run another process left, a cancel, or a fork's copy of another thread).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::state::{Node, UnknownName};

/// The producer of a checkpoint, recorded in its history entry and event (`node` in the JSON and
/// the database). The pseudo-nodes are typed so a writer cannot invent a name the readers do not
/// know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A node finished (or `execute_batch` saved partial progress).
    Node(Node),
    /// A turn started: the first checkpoint of a thread, or a new prompt on a finished one.
    Start,
    /// A process took over a run whose lease had expired.
    Takeover,
    /// The user cancelled the run (`Engine::cancel`).
    Cancel,
    /// The first checkpoint of a fork: another thread's checkpoint copied (`Engine::fork`).
    Fork,
}

impl Origin {
    /// The name stored in the `node` column and sent as `node` in history entries and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Node(node) => node.as_str(),
            Origin::Start => "start",
            Origin::Takeover => "takeover",
            Origin::Cancel => "cancel",
            Origin::Fork => "fork",
        }
    }
}

impl From<Node> for Origin {
    fn from(node: Node) -> Self {
        Origin::Node(node)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Origin {
    type Err = UnknownName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "start" => Ok(Origin::Start),
            "takeover" => Ok(Origin::Takeover),
            "cancel" => Ok(Origin::Cancel),
            "fork" => Ok(Origin::Fork),
            _ => name.parse().map(Origin::Node),
        }
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// The schema says every name an origin can have, so API clients (and the OpenAPI document's
/// checks) know the set is closed; it is written by hand because the serializer is.
impl utoipa::PartialSchema for Origin {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let pseudo = [
            Origin::Start,
            Origin::Takeover,
            Origin::Cancel,
            Origin::Fork,
        ];
        let names = Node::ALL
            .map(Origin::Node)
            .into_iter()
            .chain(pseudo)
            .map(Origin::as_str);
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(names))
            .description(Some(
                "What wrote the checkpoint: a node of the flow, or `start` (a new turn), \
                 `takeover` (a process took an expired run over), `cancel` (the user stopped it), \
                 `fork` (the first checkpoint of a fork).",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Origin {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for origin in [
            Origin::Start,
            Origin::Takeover,
            Origin::Cancel,
            Origin::Fork,
            Origin::Node(Node::ParsePrompt),
            Origin::Node(Node::ExecuteBatch),
            Origin::Node(Node::End),
        ] {
            assert_eq!(origin.as_str().parse::<Origin>().ok(), Some(origin));
            let json = serde_json::to_value(origin).ok();
            assert_eq!(json, Some(serde_json::Value::String(origin.to_string())));
        }
        assert!("nonsense".parse::<Origin>().is_err());
    }
}
