//! Who a config is resolved for: the identity a sidecar gives when it watches or
//! reports, and what document sections, stage moves and overrides match on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who a config is resolved for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
pub struct Workload {
    /// Its service name.
    pub service: Option<String>,
    /// Its namespace.
    pub namespace: Option<String>,
    /// Its pod labels.
    pub labels: BTreeMap<String, String>,
}
