//! The directory at scale's contract: `GET /api/agents` and search paged by an opaque cursor
//! (the body stays the bare array it always was), and a directory that never disagrees with
//! the store, whatever a client does mid-request.

use std::time::Duration;

use baton::store::StoreOptions;
use serde_json::{Value, json};

use crate::helpers::{all_agents, http, spawn_app_with, temp_db};

fn card(id: &str, description: &str) -> Value {
    json!({"id": id, "name": format!("Agent {id}"), "description": description,
           "url": "http://127.0.0.1:9/a2a",
           "skills": [{"id": "s", "name": "Paging", "description": description,
                       "tags": ["paging"]}]})
}

#[tokio::test]
async fn the_directory_and_search_come_in_pages() {
    let app = spawn_app_with(|_| {}).await;
    for i in 0..25 {
        let (code, body) = app
            .register(&card(&format!("page-{i:02}"), "pages of paging cards"))
            .await;
        assert_eq!(code, 201, "{body}");
    }
    let (code, all) = app.get("/api/agents").await;
    assert_eq!(code, 200);
    let all: Vec<&str> = all
        .as_array()
        .expect("still a bare array")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(
        all.len(),
        33,
        "25 cards and the 8 demo agents fit one default page"
    );
    let paged = all_agents(&app.base(), 7).await;
    let paged: Vec<&str> = paged.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(paged, all, "pages of 7 give every card once, in id order");
    assert!(paged.is_sorted());
    let response = http()
        .get(app.url("/api/agents?limit=30"))
        .send()
        .await
        .expect("list");
    let link = response.headers()["link"]
        .to_str()
        .expect("link")
        .to_owned();
    assert!(
        link.ends_with("rel=\"next\"") && link.contains("cursor="),
        "{link}"
    );
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=zz",
        "cursor=733a31",
    ] {
        let (code, body) = app.get(&format!("/api/agents?{bad}")).await;
        assert_eq!(code, 422, "{bad}: {body}");
    }

    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = http().get(app.url("/api/agents/search?q=paging&limit=4"));
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let response = request.send().await.expect("search");
        assert_eq!(response.status().as_u16(), 200);
        cursor = response
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().expect("cursor").to_owned());
        let hits: Vec<Value> = response.json().await.expect("hits");
        found.extend(hits.iter().map(|h| h["agent"]["id"].to_string()));
        if cursor.is_none() {
            break;
        }
    }
    let mut distinct = found.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(found.len(), 25, "every paging card once: {found:?}");
    assert_eq!(distinct.len(), 25);
    let (code, _) = app.get("/api/agents/search?q=paging&cursor=613a31").await;
    assert_eq!(code, 422, "a list cursor is not a search cursor");
}

/// Cards as the directory lists them, by id, compared on what the store keeps.
fn by_id(cards: impl IntoIterator<Item = Value>) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = cards
        .into_iter()
        .map(|c| (c["id"].as_str().expect("id").to_owned(), c))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test]
async fn requests_cut_off_mid_flight_leave_directory_and_store_agreeing() {
    let (_dir, db) = temp_db();
    let url = format!("sqlite://{}", db.display());
    let app = spawn_app_with(|s| s.database_url = url.clone()).await;
    let store = baton::store::connect(&url, &StoreOptions::default())
        .await
        .expect("the same database");
    let client = http();
    for round in 0..150_u64 {
        let id = format!("cut-{}", round % 6);
        let request = if round % 5 == 4 {
            client.delete(app.url(&format!("/api/agents/{id}")))
        } else {
            client
                .post(app.url("/api/agents"))
                .json(&card(&id, &format!("version {round}")))
        };
        // Cut off anywhere from before the request is sent to after it is answered.
        let cut = Duration::from_micros((round * 7_919) % 4_000);
        let _ = tokio::time::timeout(cut, request.send()).await;
    }
    let stored = || async {
        let rows = store.agent_rows(None, 1000).await.expect("rows");
        by_id(
            rows.into_iter()
                .map(|r| serde_json::from_str::<Value>(&r.json).expect("stored JSON")),
        )
    };
    // Changes already under way (a cut-off request the server had read) finish on their own;
    // once nothing moves any more, the two agree exactly.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut previous = Vec::new();
    let agreed = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let listed = by_id(all_agents(&app.base(), 4).await);
        if listed == previous && listed == stored().await {
            break listed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "directory and store never settled into agreement"
        );
        previous = listed;
    };
    assert!(
        agreed.iter().any(|(id, _)| id.starts_with("cut-")),
        "some registrations landed"
    );
    for (id, card) in &agreed {
        let (code, got) = app.get(&format!("/api/agents/{id}")).await;
        assert_eq!((code, &got), (200, card), "{id}");
    }
}
