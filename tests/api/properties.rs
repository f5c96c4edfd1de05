//! Property tests of what reads untrusted input: the A2A JSON-RPC request parser (any bytes),
//! every reader of an agent's answer (any JSON), the card parser (any JSON, and valid cards
//! with fields knocked out or replaced), the paging cursor and the `Last-Event-ID` reader (any
//! text), and a thread's state (a real state with its values replaced, round-tripped through its
//! JSON form). None may panic; what is accepted must read back as it was written.
//!
//! Each property runs a fixed number of cases from a fixed seed (`runner`), so CI runs the same
//! cases every time and a failure names the input that caused it.

use std::cell::Cell;
use std::str::FromStr;

use baton::agents::a2a::wire::{
    Artifact, Message, RpcError, RpcRequest, SendResult, StreamEvent, Task,
};
use baton::api::paging::{decode_cursor, encode_cursor};
use baton::directory::register::parse_card;
use baton::engine::timeline::ResumePoint;
use baton::state::ThreadState;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

/// Cases per property: enough to reach nested shapes, cheap enough for every CI run.
const CASES: u32 = 2048;

/// A runner with a fixed seed and no failure files: the same cases on every run and machine.
fn runner() -> TestRunner {
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]))
}

/// Any JSON value, nested a few levels, with the keys the readers look for among the random
/// ones so that the interesting branches are reached, not only "not an object".
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("kind".to_owned()),
        Just("id".to_owned()),
        Just("status".to_owned()),
        Just("state".to_owned()),
        Just("parts".to_owned()),
        Just("text".to_owned()),
        Just("message".to_owned()),
        Just("artifacts".to_owned()),
        Just("result".to_owned()),
        Just("error".to_owned()),
        Just("task".to_owned()),
        Just("statusUpdate".to_owned()),
        Just("artifactUpdate".to_owned()),
        Just("skills".to_owned()),
        Just("name".to_owned()),
        Just("url".to_owned()),
        Just("jsonrpc".to_owned()),
        Just("method".to_owned()),
        Just("params".to_owned()),
        "[a-zA-Z_]{1,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("completed".to_owned()),
            Just("input-required".to_owned()),
            Just("TASK_STATE_WORKING".to_owned()),
            Just("text".to_owned()),
            Just("2.0".to_owned()),
            Just("message/send".to_owned()),
            Just("SendMessage".to_owned()),
            ".{0,24}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Replaces the value at a random place in `base` (any depth) with `with`, or removes it.
fn mutated(base: &Value, path_choice: &[usize], with: Option<Value>) -> Value {
    fn walk(value: &mut Value, choices: &[usize], with: Option<Value>) {
        let Some((&choice, rest)) = choices.split_first() else {
            return;
        };
        match value {
            Value::Object(map) if !map.is_empty() => {
                let key = map
                    .keys()
                    .nth(choice % map.len())
                    .cloned()
                    .unwrap_or_default();
                let descend = rest.first().is_some_and(|c| c % 3 != 0)
                    && map.get(&key).is_some_and(|v| v.is_object() || v.is_array());
                if descend {
                    if let Some(child) = map.get_mut(&key) {
                        walk(child, rest, with);
                    }
                } else {
                    match with {
                        Some(v) => {
                            map.insert(key, v);
                        }
                        None => {
                            map.remove(&key);
                        }
                    }
                }
            }
            Value::Array(list) if !list.is_empty() => {
                let i = choice % list.len();
                let descend = rest.first().is_some_and(|c| c % 3 != 0)
                    && (list[i].is_object() || list[i].is_array());
                if descend {
                    walk(&mut list[i], rest, with);
                } else {
                    match with {
                        Some(v) => list[i] = v,
                        None => {
                            list.remove(i);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = base.clone();
    walk(&mut out, path_choice, with);
    out
}

#[test]
fn the_json_rpc_request_parser_takes_any_bytes() {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (json_value(), json_value()).prop_map(|(params, id)| {
            json!({"jsonrpc": "2.0", "method": "message/send", "params": params, "id": id})
                .to_string()
                .into_bytes()
        }),
    ];
    let accepted = Cell::new(0);
    runner()
        .run(&bytes, |body| {
            if RpcRequest::parse(&body).is_ok() {
                accepted.set(accepted.get() + 1);
            }
            Ok(())
        })
        .expect("the parser answers every body");
    assert!(accepted.get() > 0, "no generated request was well-formed");
}

#[test]
fn every_reader_of_an_agents_answer_takes_any_json() {
    runner()
        .run(&json_value(), |value| {
            let _ = Task::read(&value);
            let _ = Task::read_list(&value);
            let _ = StreamEvent::read(&value);
            let _ = SendResult::read(&value);
            let _ = Message::read(&value);
            let _ = Artifact::read(&value);
            let _ = RpcError::read(&value);
            Ok(())
        })
        .expect("the readers answer every value");
}

/// A valid card in Baton's own form, the base the card properties knock fields out of.
fn valid_card() -> Value {
    json!({
        "id": "props.weather", "name": "Weather", "description": "Forecasts for a city",
        "url": "http://127.0.0.1:9/weather", "version": "1.0.0",
        "capabilities": {"streaming": false},
        "skills": [{"id": "forecast", "name": "Forecast", "description": "Forecast a city",
                    "tags": ["weather", "forecast"], "examples": ["Weather in Oslo"],
                    "inputs": [{"name": "city", "description": "The city", "required": true,
                                "type": "string"}]}],
        "price_per_call_usd": 0.01, "rating": 4.5
    })
}

#[test]
fn the_card_parser_takes_any_json_and_what_it_accepts_reads_back() {
    let base = valid_card();
    let input = prop_oneof![
        json_value(),
        (
            prop::collection::vec(any::<usize>(), 1..5),
            prop::option::of(json_value())
        )
            .prop_map(move |(path, with)| mutated(&base, &path, with)),
    ];
    let accepted = Cell::new(0);
    runner()
        .run(&input, |value| {
            if let Ok(card) = parse_card(value) {
                accepted.set(accepted.get() + 1);
                let written = serde_json::to_value(&card).expect("a parsed card serializes");
                let again = parse_card(written).expect("a written card parses");
                prop_assert_eq!(again, card);
            }
            Ok(())
        })
        .expect("the parser answers every value");
    assert!(accepted.get() > 0, "no generated card was accepted");
}

#[test]
fn cursors_read_back_and_any_text_is_answered() {
    runner()
        .run(&".{0,64}", |text| {
            prop_assert_eq!(
                decode_cursor(&encode_cursor(&text), "cursor").ok(),
                Some(text.clone())
            );
            let _ = decode_cursor(&text, "cursor");
            let _ = ResumePoint::from_str(&text);
            Ok(())
        })
        .expect("cursors");
}

/// A turn's first state, as the engine writes it.
fn real_state() -> Value {
    serde_json::to_value(ThreadState::new_turn(
        "props-thread".into(),
        "Weather in Oslo and convert 100 USD to EUR".into(),
        3,
    ))
    .expect("a new state serializes")
}

#[test]
fn a_state_with_any_value_replaced_reads_back_as_it_was_written() {
    let base = real_state();
    let input = (
        prop::collection::vec(any::<usize>(), 1..4),
        prop::option::of(json_value()),
    )
        .prop_map(move |(path, with)| mutated(&base, &path, with));
    let accepted = Cell::new(0);
    runner()
        .run(&input, |value| {
            if let Ok(state) = serde_json::from_value::<ThreadState>(value) {
                accepted.set(accepted.get() + 1);
                let written = serde_json::to_value(&state).expect("a state serializes");
                let again: ThreadState =
                    serde_json::from_value(written).expect("a written state reads back");
                prop_assert_eq!(again, state);
            }
            Ok(())
        })
        .expect("states");
    assert!(accepted.get() > 0, "no generated state was accepted");
}
