//! Settings for the unit tests, pointing at the simulators.

use std::path::Path;

use super::{ConfigError, Settings};

impl Settings {
    /// Settings for the unit tests: every key valid, pointing at the simulators at the
    /// given URLs, listening on any free port (see `App::build`).
    pub(crate) fn for_simulators(
        sf_login_url: &str,
        lark_base_url: &str,
        store_path: &Path,
    ) -> Result<Settings, ConfigError> {
        Self::load_from(
            None,
            lvb_simulators::service_env(sf_login_url, lark_base_url, store_path),
        )
    }
}
