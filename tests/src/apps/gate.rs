//! A gate that holds `/gate` requests until the test lets them through: graceful
//! drain tests need a request provably in flight at the app when the sidecar is
//! told to stop, and a way to finish it afterwards, without sleeping.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::bound::within;

/// The test's side of the HTTP app's `/gate` route. Clones share one gate.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// One permit per request that reached the gate and was not yet awaited.
    arrived: Semaphore,
    /// One permit per request the test released.
    released: Semaphore,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            arrived: Semaphore::new(0),
            released: Semaphore::new(0),
        }
    }
}

// === impl Gate ===

impl Gate {
    /// Resolves once a `/gate` request has reached the app (each call consumes
    /// one arrival, so two calls wait for two requests).
    pub async fn arrived(&self) {
        within("a request to arrive at /gate", self.inner.arrived.acquire())
            .await
            .expect("the gate's semaphore is never closed")
            .forget();
    }

    /// Lets one held (or the next) `/gate` request answer `200 OK`.
    pub fn release(&self) {
        self.inner.released.add_permits(1);
    }

    /// The app's side: announces the request and waits for its release.
    pub(crate) async fn pass(&self) {
        self.inner.arrived.add_permits(1);
        self.inner
            .released
            .acquire()
            .await
            .expect("the gate's semaphore is never closed")
            .forget();
    }
}
