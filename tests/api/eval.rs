//! `baton eval` through its library entry point: the corpus under `evals/` is well-formed and
//! covers every kind, a malformed line is reported with its file and line, and the rules planner
//! holds the score CI requires.

use std::path::{Path, PathBuf};

use baton::config::Settings;
use baton::eval::{self, corpus};

/// The floor CI holds the offline planner to, on the corpus it was developed against.
const RULES_FLOOR: f64 = 0.95;

/// The floor on the held-out corpora (`evals/heldout/`, `evals/blind/`: cases written blind, by someone who had
/// not seen the planner, and never tuned against). It guards against regressions; the score
/// itself is the honest measure of how the planner does on requests it was not shaped by.
const HELDOUT_FLOOR: f64 = 0.45;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("evals")
}

#[test]
fn the_corpus_is_well_formed_and_covers_every_kind() {
    let corpus = corpus::load(&corpus_dir()).expect("the corpus loads");
    assert!(corpus.cases.len() >= 80, "{} cases", corpus.cases.len());
    for kind in corpus::KINDS {
        let n = corpus.cases.iter().filter(|c| c.kind == *kind).count();
        assert!(n >= 8, "kind {kind} has only {n} cases");
    }
    assert!(
        corpus.agents.len() >= 10,
        "{} eval agents",
        corpus.agents.len()
    );
}

#[test]
fn a_malformed_corpus_line_names_its_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("cases")).expect("cases dir");
    std::fs::write(dir.path().join("agents.json"), "[]").expect("agents.json");
    let good = r#"{"id":"ok-1","kind":"routing","request":"weather in Oslo","expect":{"agents":["demo.weather"]}}"#;
    let cases = dir.path().join("cases").join("routing.jsonl");
    let message = load_error(
        dir.path(),
        &format!("{good}\n{{\"id\": \"bad\", \"kind\": \n"),
        "line 2 is cut",
    );
    assert!(
        message.starts_with(&format!("{}:2:", cases.display())),
        "{message}"
    );

    let wrong_kind =
        r#"{"id":"k-1","kind":"routeing","request":"x","expect":{"agents":["demo.weather"]}}"#;
    let message = load_error(
        dir.path(),
        &format!("{good}\n\n{wrong_kind}\n"),
        "unknown kind",
    );
    assert!(message.contains("routing.jsonl:3:"), "{message}");
    assert!(message.contains("unknown kind \"routeing\""), "{message}");

    let typo = r#"{"id":"t-1","kind":"routing","request":"x","expect":{"agents":["demo.weather"],"arguments":{"demo.weather":{"city":"Oslo"}}}}"#;
    let message = load_error(dir.path(), &format!("{typo}\n"), "no such input");
    assert!(message.contains("routing.jsonl:1:"), "{message}");
    assert!(message.contains("has no input \"city\""), "{message}");
}

/// What loading the corpus in `dir` says once its `cases/routing.jsonl` holds `lines`, which
/// are wrong (`why`).
fn load_error(dir: &Path, lines: &str, why: &str) -> String {
    std::fs::write(dir.join("cases").join("routing.jsonl"), lines).expect("cases");
    corpus::load(dir).expect_err(why).to_string()
}

/// The rules planner's report on `corpus`, printed, so a failing floor shows which cases failed
/// and why.
async fn rules_report(corpus: &corpus::Corpus) -> eval::Report {
    let report = eval::run_corpus(corpus, &Settings::default(), None)
        .await
        .expect("the eval runs");
    println!("{}", report.text(eval::Listing::Failures));
    println!("{}", report.json_line());
    report
}

/// The floor CI holds; when it fails, the report it prints says which cases and why.
#[tokio::test]
async fn the_rules_planner_holds_the_floor() {
    let corpus = corpus::load(&corpus_dir()).expect("the corpus loads");
    let report = rules_report(&corpus).await;
    assert!(
        report.score() >= RULES_FLOOR,
        "rules planner scores {:.3}, below the floor {RULES_FLOOR}; failed: {:?}",
        report.score(),
        report.failed()
    );
}

/// `baton eval --planner llm` runs the LLM planner; with its model unreachable every decision
/// falls back to the rules planner, so the report is the LLM planner's and scores like rules.
#[tokio::test]
async fn the_llm_planner_is_scored_the_same_way_and_falls_back_when_the_model_is_down() {
    let base = crate::helpers::unreachable_base_url().await;
    let settings = Settings {
        planner: baton::config::PlannerKind::Llm,
        llm_base_url: Some(base),
        llm_model: Some("down".into()),
        llm_attempts: 1,
        ..Settings::default()
    };
    let corpus = corpus::load(&corpus_dir()).expect("the corpus loads");
    let report = eval::run_corpus(&corpus, &settings, Some("routing"))
        .await
        .expect("the eval runs");
    let line: serde_json::Value =
        serde_json::from_str(&report.json_line()).expect("the JSON line parses");
    assert_eq!(line["planner"], "llm", "{line}");
    assert!(line["cases"].as_u64().expect("cases") >= 8, "{line}");
    let rules = eval::run_corpus(&corpus, &Settings::default(), Some("routing"))
        .await
        .expect("the eval runs");
    assert_eq!(
        report.failed(),
        rules.failed(),
        "fallbacks decide as the rules planner does: {line}"
    );
}

/// The held-out corpora load, cover every kind, and the rules planner does not fall below
/// where it stood when they were written.
#[tokio::test]
async fn the_rules_planner_on_the_held_out_corpus() {
    held_out("heldout").await;
}

#[tokio::test]
async fn the_rules_planner_on_the_blind_corpus() {
    held_out("blind").await;
}

async fn held_out(name: &str) {
    let corpus = corpus::load(&corpus_dir().join(name)).expect("the held-out corpus loads");
    assert!(corpus.cases.len() >= 54, "{} cases", corpus.cases.len());
    for kind in corpus::KINDS {
        let n = corpus.cases.iter().filter(|c| c.kind == *kind).count();
        assert!(n >= 6, "kind {kind} has only {n} held-out cases");
    }
    let report = rules_report(&corpus).await;
    assert!(
        report.score() >= HELDOUT_FLOOR,
        "rules planner scores {:.3} on evals/{name}, below {HELDOUT_FLOOR}",
        report.score()
    );
}
