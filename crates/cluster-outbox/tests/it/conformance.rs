//! The `OutboxStore` conformance suite against the JetStream engine.

use std::sync::Arc;

use weaver_bridge::outbox::conformance::Fixture;

use crate::env::{config, open};

fn fixture() -> Fixture {
    Fixture {
        ob: Arc::new(open(&config())),
        _keep: Box::new(()),
    }
}

weaver_bridge::outbox_conformance_suite!(fixture);
