//! Delivers the worklist's webhook outbox (critical results, quality rejections) to the
//! sites' own systems: POST of the JSON body, retried with backoff until it lands. One node
//! of the cluster delivers (the one holding the webhooks lease); a node killed between the
//! POST and recording it sends that one again after it, so receivers key on the ids in the
//! body.

use std::time::Duration;

use worklist::Worklist;

/// Deliver what is due, once. Returns how many were attempted.
pub async fn deliver_due(wl: &Worklist, client: &reqwest::Client) -> Result<usize, worklist::Error> {
    let due = wl.due_deliveries(20).await?;
    for d in &due {
        let outcome = client
            .post(&d.url)
            .header("content-type", "application/json")
            .header("x-readhub-delivery", d.id.to_string())
            .body(d.body.clone())
            .send()
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| if r.status().is_success() { Ok(()) } else { Err(format!("HTTP {}", r.status())) });
        match &outcome {
            Ok(()) => tracing::info!(delivery = d.id, url = %d.url, "webhook delivered"),
            Err(e) => tracing::warn!(delivery = d.id, url = %d.url, attempts = d.attempts + 1, error = %e, "webhook delivery failed; will retry"),
        }
        wl.record_delivery(d.id, outcome).await?;
    }
    Ok(due.len())
}

/// The delivery loop, until `stop` turns true.
pub async fn run(wl: Worklist, mut lease: storage::lease::Lease, mut stop: tokio::sync::watch::Receiver<bool>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !lease.held(storage::now_ms()).await {
                    continue;
                }
                if let Err(e) = deliver_due(&wl, &client).await {
                    tracing::warn!(error = %e, "webhook outbox failed");
                }
            }
            _ = stop.changed() => if *stop.borrow() { break },
        }
    }
}
