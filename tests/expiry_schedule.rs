//! The expiry schedule, in process, on a clock the test moves: a grace period's end is
//! recorded when it comes, even if nobody presents the previous token again, and not
//! before — without waiting a real minute for it.

use std::sync::Arc;
use std::time::Duration as Wait;

use chrono::{Duration, SubsecRound, Utc};
use keyledger::ledger::chain::Replay;
use keyledger::ledger::{ChainHead, SledStorage, Storage};
use keyledger::service::clock::{Clock, ManualClock};
use keyledger::service::operator;
use keyledger::service::recovery::load_state;
use keyledger::service::rules::directory::DirectoryFile;
use keyledger::service::rules::rotate_api_key::Rotation;
use keyledger::service::token::TokenFormat;
use keyledger::service::writer::Writer;
use keyledger::service::{Policy, Service};
use keyledger_projections::{Actor, Event};

#[tokio::test]
async fn the_schedule_retires_a_previous_token_when_its_grace_period_ends_even_unpresented() {
    let dir = tempfile::tempdir().unwrap();
    let sled = Arc::new(SledStorage::open(dir.path()).unwrap());
    let storage: Arc<dyn Storage> = Arc::clone(&sled) as Arc<dyn Storage>;
    let mut writer = Writer::new(Arc::clone(&storage), load_state(&*storage).unwrap()).unwrap();
    let tokens = TokenFormat::new("rootly").unwrap();
    let old = operator::initialize(&mut writer, &[DirectoryFile::single_owner("Acme", "owner@acme.test")], &tokens).unwrap();
    let clock = Arc::new(ManualClock::new(Utc::now().trunc_subsecs(6)));
    let started = clock.now();
    let (service, writer_thread) = Service::start(writer, tokens, sled, Policy::default(), Arc::clone(&clock) as Arc<dyn Clock>).unwrap();
    let service = Arc::new(service);

    let caller = service.authenticate(old.reveal()).expect("the owner's token");
    let rotation = Rotation { grace_period_minutes: Some(1), ..Rotation::default() };
    let rotated = service.rotate_api_key(&caller, caller.api_key_id, rotation, "rotate".into()).await.unwrap();
    let ends = rotated.key.grace_period_ends_at.expect("a grace period");
    assert_eq!(ends, started + Duration::minutes(1));
    let schedule = tokio::spawn({
        let service = Arc::clone(&service);
        async move { service.run_expiry_schedule().await }
    });
    let grace_recorded =
        |service: &Service| service.read(|s| s.keys.get(caller.api_key_id).is_some_and(|k| k.grace_period_ends_at.is_none()));

    clock.advance(Duration::seconds(59));
    tokio::task::yield_now().await;
    assert!(!grace_recorded(&service), "retired before its grace period ended");
    assert!(service.authenticate(old.reveal()).is_some(), "the previous token works until the end");

    clock.advance(Duration::seconds(2));
    let deadline = tokio::time::Instant::now() + Wait::from_secs(30);
    while !grace_recorded(&service) {
        assert!(tokio::time::Instant::now() < deadline, "the end of the grace period was not recorded");
        tokio::time::sleep(Wait::from_millis(5)).await;
    }
    assert!(service.authenticate(old.reveal()).is_none(), "never after");
    assert!(service.authenticate(rotated.token.reveal()).is_some());

    schedule.abort();
    // The schedule holds the service until its task is gone; only then can the writer stop.
    assert!(schedule.await.is_err_and(|e| e.is_cancelled()));
    drop(service);
    writer_thread.join();
    let ended: Vec<_> = Replay::new(storage.events_from(1), ChainHead::genesis())
        .map(|event| event.unwrap())
        .filter(|event| matches!(event.event, Event::ApiKeyGracePeriodEnded(_)))
        .collect();
    assert_eq!(ended.len(), 1, "recorded once: {ended:?}");
    assert_eq!(ended[0].actor, Actor::Schedule);
    assert!(ended[0].recorded_at >= ends, "recorded at {}, before the end {ends}", ended[0].recorded_at);
}
