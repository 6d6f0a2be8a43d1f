//! Every example and shipped runbook loads; the README's examples run.
