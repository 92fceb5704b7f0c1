//! Concurrent creates against the real binary: name uniqueness under a race, and many
//! distinct creates at once.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::fixtures::{fixture, PLATFORM_TEAM};
use common::http::{create, in_days, personal, show, Resp};
use common::jsonapi::assert_taken;
use common::load::{assert_acked_keys_intact, Acked};
use common::server::{terminate, DataDir, Server};
use serde_json::{json, Value};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

const RACERS: usize = 48;

/// Sends every create at once (released together by a barrier) and returns the answers in
/// the order of `attributes`.
async fn race(api: &str, token: &str, attributes: Vec<Value>) -> Vec<(u16, Value)> {
    let barrier = Arc::new(Barrier::new(attributes.len()));
    let mut tasks = JoinSet::new();
    for (i, attrs) in attributes.into_iter().enumerate() {
        let (api, token, barrier) = (api.to_owned(), token.to_owned(), Arc::clone(&barrier));
        tasks.spawn(async move {
            barrier.wait().await;
            let answer = create(&api, &token, attrs).await;
            (i, (answer.status, answer.json))
        });
    }
    let mut answers: Vec<Option<(u16, Value)>> = vec![None; tasks.len()];
    while let Some(joined) = tasks.join_next().await {
        let (i, answer) = joined.expect("racer panicked");
        answers[i] = Some(answer);
    }
    answers.into_iter().map(|a| a.expect("every racer answered")).collect()
}

/// Exactly one 201; every other answer is a 422 saying only that the name is taken.
/// Returns the index of the winner and its body.
fn single_winner(answers: &[(u16, Value)], what: &str) -> (usize, Value) {
    let winners: Vec<usize> = answers.iter().enumerate().filter(|(_, (s, _))| *s == 201).map(|(i, _)| i).collect();
    assert_eq!(
        winners.len(),
        1,
        "{what}: expected exactly one 201 among {} racers, got {}; statuses: {:?}",
        answers.len(),
        winners.len(),
        answers.iter().map(|(s, _)| *s).collect::<Vec<_>>()
    );
    for (i, (status, body)) in answers.iter().enumerate() {
        if i != winners[0] {
            assert_taken(*status, body, &format!("{what}, racer {i}"));
        }
    }
    (winners[0], answers[winners[0]].1.clone())
}

/// 48 spellings of `base`: letter case varied per racer, 0 to 2 spaces before and after.
fn spellings(base: &str) -> Vec<String> {
    (0..RACERS)
        .map(|i| {
            let cased: String = base
                .chars()
                .enumerate()
                .map(|(j, c)| if (i >> (j % 5)) & 1 == 1 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                .collect();
            format!("{}{cased}{}", " ".repeat(i % 3), " ".repeat((i / 3) % 3))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_eight_concurrent_creates_of_one_name_make_one_key_and_the_name_stays_taken_after_restart() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let owner = server.owner_token().expect("banner token");
    let api = server.base.clone();

    let answers = race(&api, &owner, (0..RACERS).map(|_| personal("deploy bot")).collect()).await;
    let (_, winner) = single_winner(&answers, "48 identical personal creates");
    let created = Acked::from_created("deploy bot", &winner);

    terminate(server, Duration::from_secs(30)).await;
    let server = Server::start(&data);
    assert!(server.owner_token().is_none(), "a restart must not initialize the ledger again");
    let api = server.base.clone();
    let Resp { status, json: body, .. } = show(&api, &owner, &created.id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["attributes"]["name"], "deploy bot");
    for name in ["deploy bot", "Deploy Bot", "  DEPLOY BOT "] {
        let Resp { status, json: body, .. } = create(&api, &owner, personal(name)).await;
        assert_taken(status, &body, &format!("re-creating {name:?} after restart"));
    }
    // Another name is still free: the refusals above are about the name, not the server.
    let Resp { status, json: body, .. } = create(&api, &owner, personal("deploy bot 2")).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_differing_only_in_case_and_surrounding_spaces_race_to_one_key_per_kind_and_scope() {
    let data = DataDir::new();
    let directory = fixture("directory.example.json");
    let server = Server::start_with(&data, &["--directory", directory.to_str().unwrap()]);
    let alice = server.owner_token().expect("banner token of alice, the first owner");
    let api = server.base.clone();

    let spelled = spellings("Deploy Bot");
    assert_eq!(spelled.iter().collect::<HashSet<_>>().len(), RACERS, "every racer spells the name differently");
    let kinds: [(&str, Value); 3] = [
        ("personal", json!({"kind": "personal"})),
        ("team", json!({"kind": "team", "group_id": PLATFORM_TEAM})),
        ("organization", json!({"kind": "organization"})),
    ];
    let attributes = |extra: &Value, name: &str| {
        let mut attrs = extra.clone();
        attrs["name"] = json!(name);
        attrs["expires_at"] = json!(in_days(30));
        attrs
    };

    // The same name in three kinds: three scopes, so one winner in each.
    let mut winners = Vec::new();
    for (kind, extra) in &kinds {
        let answers = race(&api, &alice, spelled.iter().map(|name| attributes(extra, name)).collect()).await;
        let (index, body) = single_winner(&answers, &format!("48 {kind} creates spelled differently"));
        assert_eq!(body["data"]["attributes"]["kind"], *kind, "{body}");
        assert_eq!(body["data"]["attributes"]["name"], spelled[index].trim(), "the name is kept trimmed: {body}");
        winners.push((kind, extra, Acked::from_created(spelled[index].trim(), &body)));
    }

    terminate(server, Duration::from_secs(30)).await;
    let server = Server::start(&data);
    let api = server.base.clone();
    for (kind, extra, key) in &winners {
        let Resp { status, json: body, .. } = show(&api, &alice, &key.id).await;
        assert_eq!(status, 200, "{kind} key after restart: {body}");
        assert_eq!(body["data"]["attributes"]["name"], key.name.as_str(), "{body}");
        for name in [&spelled[0], &spelled[RACERS - 1], &"DEPLOY BOT".to_owned()] {
            let Resp { status, json: body, .. } = create(&api, &alice, attributes(extra, name)).await;
            assert_taken(status, &body, &format!("re-creating {kind} {name:?} after restart"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_hundred_forty_concurrent_creates_of_distinct_names_all_succeed_and_all_show() {
    const TASKS: usize = 64;
    const EACH: usize = 10;
    let data = DataDir::new();
    let server = Server::start(&data);
    let owner = server.owner_token().expect("banner token");
    let api = server.base.clone();

    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let (api, owner, barrier) = (api.clone(), owner.clone(), Arc::clone(&barrier));
        tasks.spawn(async move {
            barrier.wait().await;
            let mut created = Vec::new();
            for n in 0..EACH {
                let name = format!("key {task}-{n}");
                let Resp { status, json: body, .. } = create(&api, &owner, personal(&name)).await;
                assert_eq!(status, 201, "create {name:?}: {body}");
                created.push(Acked::from_created(&name, &body));
            }
            created
        });
    }
    let mut created = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        created.extend(joined.expect("creating task panicked"));
    }
    assert_eq!(created.len(), TASKS * EACH);
    assert_eq!(created.iter().map(|k| &k.id).collect::<HashSet<_>>().len(), TASKS * EACH, "ids must be distinct");
    assert_eq!(created.iter().map(|k| &k.token).collect::<HashSet<_>>().len(), TASKS * EACH, "tokens must be distinct");

    // Every one shows, to the owner and to its own token, and holds its name.
    assert_acked_keys_intact(&api, &owner, &created, "after 640 concurrent creates").await;
}
