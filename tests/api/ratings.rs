//! Ratings are added in the store, atomically: two `baton serve` processes on one PostgreSQL
//! database rating one card at once lose none (each process used to serialize its own ratings
//! only, reading the card from its own index), and neither do concurrent requests on SQLite.

use serde_json::{Value, json};

use crate::helpers::{ServerProcess, TestPostgres, eventually, get, post, spawn_app_with};

/// Ratings each process (or each half of the requests) gives.
const PER_SIDE: usize = 40;

/// A card with no rating yet, so the mean is that of the ratings given here.
fn unrated_card() -> Value {
    json!({"id": "rated", "name": "Rated forecaster", "url": "http://127.0.0.1:9/a2a",
           "description": "Weather forecasts", "rating": 0.0,
           "skills": [{"id": "f", "name": "Forecast", "description": "forecast", "tags": ["weather"]}]})
}

/// Sends `PER_SIDE` ratings of 1 to `low` and `PER_SIDE` ratings of 4 to `high`, all at once;
/// each must be accepted.
async fn rate_from_both_sides(low: &str, high: &str) {
    let rating = |base: String, stars: f64| async move {
        post(&base, "/api/agents/rated/rate", json!({ "rating": stars })).await
    };
    let requests =
        (0..PER_SIDE).flat_map(|_| [rating(low.to_owned(), 1.0), rating(high.to_owned(), 4.0)]);
    for (code, body) in futures_util::future::join_all(requests).await {
        assert_eq!(code, 200, "{body}");
    }
}

/// The card at `base` has every rating, and their mean (2.5).
fn assert_all_counted(card: &Value) {
    assert_eq!(card["rating_count"], 2 * PER_SIDE as u64, "{card}");
    let mean = card["rating"].as_f64().expect("rating");
    assert!((mean - 2.5).abs() < 1e-9, "{card}");
}

#[tokio::test]
async fn two_postgres_processes_rating_one_card_at_once_lose_no_rating() {
    let pg = TestPostgres::create().await;
    let a = ServerProcess::start_url(&pg.url, &["--no-demo-agents"]);
    let b = ServerProcess::start_url(&pg.url, &["--no-demo-agents"]);
    let (code, body) = post(&a.base, "/api/agents", unrated_card()).await;
    assert_eq!(code, 201, "{body}");
    eventually(
        "the card on the second process",
        std::time::Duration::from_secs(10),
        || async { (get(&b.base, "/api/agents/rated").await.0 == 200).then_some(()) },
    )
    .await;

    rate_from_both_sides(&a.base, &b.base).await;

    // Each process's index ends with the store's card: its own last answer, or the other's
    // change announced over LISTEN/NOTIFY.
    for base in [&a.base, &b.base] {
        let card = eventually(
            "every rating counted",
            std::time::Duration::from_secs(10),
            || async {
                let (_, card) = get(base, "/api/agents/rated").await;
                (card["rating_count"] == 2 * PER_SIDE as u64).then_some(card)
            },
        )
        .await;
        assert_all_counted(&card);
    }
}

#[tokio::test]
async fn concurrent_ratings_on_sqlite_all_count_in_the_store_and_the_index() {
    let app = spawn_app_with(|s| s.no_demo_agents = true).await;
    let (code, body) = app.register(&unrated_card()).await;
    assert_eq!(code, 201, "{body}");

    rate_from_both_sides(&app.base(), &app.base()).await;

    let (code, card) = app.get("/api/agents/rated").await;
    assert_eq!(code, 200, "{card}");
    assert_all_counted(&card);
    let pool = sqlx::SqlitePool::connect(&app.database_url)
        .await
        .expect("the server's file");
    let stored: String = sqlx::query_scalar("SELECT card FROM agents WHERE id = 'rated'")
        .fetch_one(&pool)
        .await
        .expect("the stored card");
    assert_all_counted(&serde_json::from_str(&stored).expect("JSON"));
}
