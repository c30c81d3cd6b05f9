//! In this package `tracing`'s `log` feature is on (axum-jwt-auth turns it on, and cargo unifies
//! features): the setting in which a disabled span keeps its metadata, and every `record`, enter
//! and exit on it searches the fields and offers them to `log`. trustgate's spans that no
//! subscriber wants must be `Span::none()` here, as they are without the feature. Run by
//! `bench/service.sh --check`.
#![allow(missing_docs)]

#[test]
fn unwanted_step_spans_are_none_with_tracings_log_feature_on() {
    let plain = tracing::info_span!("plain", field = tracing::field::Empty);
    assert!(
        plain.is_disabled() && !plain.is_none(),
        "tracing's `log` feature is off in this build, so this test shows nothing"
    );
    let step = trustgate_core::step_span!("validate", trustgate.reason = tracing::field::Empty);
    assert!(step.is_none());
}
