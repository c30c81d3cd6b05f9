//! Pattern 1 in a service, per request: one axum 0.8 router per system (see `src/lib.rs`), driven
//! in-process with `tower::ServiceExt::oneshot` on a current-thread tokio runtime. No sockets in
//! the timed loop: each iteration builds a `GET /` request (the `Authorization` value is a
//! prebuilt `HeaderValue`, cloned), runs it through the router and drops the response.
//!
//! Ids (read by `bench/service.sh`):
//! - `service/cached/<system>`: the same valid token on every request;
//! - `service/uncached/<system>`: a different valid token on every request, cycling through
//!   `DISTINCT_TOKENS` pre-forged ones; trustgate-service also has its verified-token cache
//!   switched off (`ValidatorOptions::cache.enabled = false`), so nothing is reused;
//! - `service/raw_verify`: the RSA signature check alone over the same tokens.
//!
//! With `SERVICE_INTERLEAVED_ROUNDS=N` set, the run first measures the uncached pair interleaved
//! (`test_support::interleaved`, N rounds) and prints one `interleaved:` line, which
//! `bench/service.sh` reads. Then, for information, the same uncached requests against a raw
//! verify made inside the same axum service (each iteration one request through the `no_auth`
//! router and one raw verify): one `interleaved-in-axum:` line, what the layer costs over
//! checking the signature by hand in the handler.
//!
//! For information (no target): `service/no_auth` (the same router and handler without any
//! layer) and `service/core_validate/uncached` (trustgate-core's `Validator::validate` of the
//! uncached layer, called directly, over the same distinct tokens): together with `raw_verify`
//! they split trustgate-service's uncached time into signature, the rest of validation, and the
//! service around it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt as _;
use service_peers::{
    AXUM_JWT_AUTH, DISTINCT_TOKENS, Fixture, OAUTH2_RS, RawVerify, SUBJECT, TRUSTGATE, bearer,
    request,
};
use tower::ServiceExt as _;

/// Checks, before timing, that `router` accepts every token of `values` with the subject.
fn check(runtime: &tokio::runtime::Runtime, system: &str, router: &Router, values: &[HeaderValue]) {
    runtime.block_on(async {
        for value in values {
            let response = router.clone().oneshot(request(Some(value))).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{system}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], SUBJECT.as_bytes(), "{system}");
        }
    });
}

fn layers(c: &mut Criterion) {
    let fixture = Fixture::get();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let tokens: Vec<String> = (0..DISTINCT_TOKENS).map(|i| fixture.token(i + 1)).collect();
    let distinct: Vec<HeaderValue> = tokens.iter().map(|t| bearer(t)).collect();
    let same = bearer(&fixture.token(0));

    let systems: Vec<(&str, Router, Router)> = runtime.block_on(async {
        vec![
            (
                TRUSTGATE,
                service_peers::trustgate_router(fixture, true).await,
                service_peers::trustgate_router(fixture, false).await,
            ),
            (
                OAUTH2_RS,
                service_peers::oauth2_router(fixture).await,
                service_peers::oauth2_router(fixture).await,
            ),
            (
                AXUM_JWT_AUTH,
                service_peers::axum_jwt_auth_router(fixture).await,
                service_peers::axum_jwt_auth_router(fixture).await,
            ),
        ]
    });
    for (system, cached, uncached) in &systems {
        check(&runtime, system, cached, std::slice::from_ref(&same));
        check(&runtime, system, uncached, &distinct[..8]);
    }

    let raw = RawVerify::new(fixture, &tokens);
    assert!((0..DISTINCT_TOKENS).all(|i| raw.verify(i)));

    if let Some(rounds) = std::env::var("SERVICE_INTERLEAVED_ROUNDS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let (_, _, uncached) = &systems[0];
        let plain = service_peers::no_auth_router();
        // One batch of requests through `router`, each with the next distinct token, and after
        // each `then` with the token's index: the one loop both measurements time.
        let requests = |router: &Router, next: &mut usize, batch: u32, then: &dyn Fn(usize)| {
            runtime.block_on(async {
                for _ in 0..batch {
                    let index = *next % DISTINCT_TOKENS;
                    *next = next.wrapping_add(1);
                    let request = request(Some(&distinct[index]));
                    black_box(router.clone().oneshot(request).await.unwrap().status());
                    then(index);
                }
            });
        };
        let verify = |index: usize| {
            black_box(raw.verify(black_box(index)));
        };
        let report = |label: &str, baseline: &str, measured: test_support::Interleaved| {
            println!(
                "{label}: {TRUSTGATE} uncached {:.0} ns, {baseline} {:.0} ns, ratio {:.4}, \
                 {} rounds kept of {}",
                measured.full_ns, measured.raw_ns, measured.ratio, measured.kept, measured.tried
            );
        };
        let (mut next_request, mut next_raw) = (0usize, 0usize);
        let measured = test_support::interleaved(
            rounds,
            |batch| requests(uncached, &mut next_request, batch, &|_| {}),
            |batch| {
                for _ in 0..batch {
                    verify(next_raw % DISTINCT_TOKENS);
                    next_raw = next_raw.wrapping_add(1);
                }
            },
        );
        report("interleaved", "raw verify", measured);
        let measured = test_support::interleaved(
            rounds,
            |batch| requests(uncached, &mut next_request, batch, &|_| {}),
            |batch| requests(&plain, &mut next_raw, batch, &verify),
        );
        report(
            "interleaved-in-axum",
            "no_auth router and raw verify",
            measured,
        );
    }

    let mut group = c.benchmark_group("service");
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(5));

    for (system, cached, _) in &systems {
        group.bench_function(format!("cached/{system}"), |b| {
            b.to_async(&runtime).iter(|| {
                let request = request(Some(&same));
                let router = cached.clone();
                async move { black_box(router.oneshot(request).await.unwrap().status()) }
            });
        });
    }
    for (system, _, uncached) in &systems {
        group.bench_function(format!("uncached/{system}"), |b| {
            let mut next = 0usize;
            b.to_async(&runtime).iter(|| {
                let request = request(Some(&distinct[next % DISTINCT_TOKENS]));
                next = next.wrapping_add(1);
                let router = uncached.clone();
                async move { black_box(router.oneshot(request).await.unwrap().status()) }
            });
        });
    }

    let plain = service_peers::no_auth_router();
    check(&runtime, "no auth", &plain, std::slice::from_ref(&same));
    group.bench_function("no_auth", |b| {
        b.to_async(&runtime).iter(|| {
            let request = request(Some(&same));
            let router = plain.clone();
            async move { black_box(router.oneshot(request).await.unwrap().status()) }
        });
    });
    let layer = runtime.block_on(service_peers::trustgate_layer(fixture, false));
    let validator = layer.validator().unwrap();
    group.bench_function("core_validate/uncached", |b| {
        let mut next = 0usize;
        b.to_async(&runtime).iter(|| {
            let token = &tokens[next % DISTINCT_TOKENS];
            next = next.wrapping_add(1);
            async move { black_box(validator.validate(token).await.is_ok()) }
        });
    });

    group.bench_function("raw_verify", |b| {
        let mut next = 0usize;
        b.iter(|| {
            let ok = raw.verify(black_box(next % DISTINCT_TOKENS));
            next = next.wrapping_add(1);
            black_box(ok)
        });
    });
    group.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
