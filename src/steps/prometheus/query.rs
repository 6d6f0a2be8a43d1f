//! `prometheus.query`: a PromQL query, every series of its answer judged against thresholds
//! — now (an instant query), or over the last `for` (a range: the condition must hold at
//! every point, as an alert's `for:` does: "CPU > 90% for more than 5 minutes").
//!
//! An answer with nothing to judge never passes by accident: no series is `on_empty`, a NaN
//! is `on_nan`, both `fail` unless the author says otherwise.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{api, number, sample, series_name};
use crate::duration::Duration;
use crate::helpers::http::Call;
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Judgement, Outcome, Output, StepError, Verdict};

/// Run a PromQL query and judge every series of the answer.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// PromQL: `sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))`.
    pub query: String,
    /// Warn when a series is above this.
    #[serde(default)]
    pub warn_above: Option<f64>,
    /// Fail when a series is above this.
    #[serde(default)]
    pub fail_above: Option<f64>,
    /// Warn when a series is below this.
    #[serde(default)]
    pub warn_below: Option<f64>,
    /// Fail when a series is below this.
    #[serde(default)]
    pub fail_below: Option<f64>,
    /// Judge the last `for` instead of now: a series warns or fails only if it did so at
    /// every point of the window (and was there for all of it).
    #[serde(default, rename = "for")]
    pub over: Option<Duration>,
    /// The distance between the points of a `for` window. Default: `for`/30, at least 1s.
    #[serde(default)]
    pub step: Option<Duration>,
    /// What an answer without series means: `fail` (default), `warn` or `pass`.
    #[serde(default)]
    pub on_empty: Judgement,
    /// What a NaN value means: `fail` (default), `warn` or `pass`.
    #[serde(default)]
    pub on_nan: Judgement,
}

/// One series of the answer, judged.
struct Judged {
    name: String,
    labels: Map<String, Value>,
    /// The latest value.
    value: f64,
    verdict: Verdict,
    /// Why it is not judged on the whole `for` window, if so.
    note: Option<String>,
}

impl Query {
    fn limits(&self) -> (Limits, Limits) {
        (Limits::above(self.warn_above, self.fail_above), Limits::below(self.warn_below, self.fail_below))
    }

    fn verdict(&self, v: f64) -> Verdict {
        if v.is_nan() {
            return self.on_nan.verdict();
        }
        let (above, below) = self.limits();
        above.verdict(v).max(below.verdict(v))
    }

    fn threshold(&self) -> Option<String> {
        let (above, below) = self.limits();
        let parts: Vec<String> = [above.describe(number), below.describe(number)].into_iter().flatten().collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    fn step(&self, over: Duration) -> std::time::Duration {
        self.step.map_or_else(|| (over.std() / 30).max(std::time::Duration::from_secs(1)), |s| s.std())
    }

    /// Every series of an instant query's answer.
    fn instant(&self, data: &Value) -> Result<Vec<Judged>, StepError> {
        let one = |metric: &Value, value: &Value| {
            let labels = metric.as_object().cloned().unwrap_or_default();
            let v = sample(&value[1]).unwrap_or(f64::NAN);
            Judged { name: series_name(&labels), labels, value: v, verdict: self.verdict(v), note: None }
        };
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"].as_array().into_iter().flatten().map(|s| one(&s["metric"], &s["value"])).collect()),
            Some("scalar") => Ok(vec![one(&json!({}), &data["result"])]),
            Some("matrix") => Err(StepError::invalid(
                "the query returns a range vector (a selector such as `[5m]`); wrap it in a function such as `rate()`, or judge a window with `for:`",
            )),
            other => Err(StepError::invalid(format!("the query returns {}, not numbers", other.unwrap_or("nothing")))),
        }
    }

    /// Every series of a range query's answer: the best verdict over its points, since it
    /// counts only if it held at every one of them.
    fn range(&self, data: &Value, start: f64, end: f64, step: f64, over: Duration) -> Vec<Judged> {
        data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let labels = s["metric"].as_object().cloned().unwrap_or_default();
                let points: Vec<(f64, f64)> = s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| (p[0].as_f64().unwrap_or_default(), sample(&p[1]).unwrap_or(f64::NAN)))
                    .collect();
                let value = points.last().map_or(f64::NAN, |p| p.1);
                let held = points.iter().map(|p| self.verdict(p.1)).min().unwrap_or(Verdict::Passed);
                let whole = points.first().is_some_and(|p| p.0 <= start + step) && points.last().is_some_and(|p| p.0 >= end - step);
                let (verdict, note) = if whole {
                    (held, None)
                } else {
                    let since = points.first().map_or(0.0, |p| end - p.0);
                    let seen = crate::duration::short(std::time::Duration::from_secs_f64(since.max(0.0)));
                    (Verdict::Passed, (held > Verdict::Passed).then(|| format!("only for {seen} of {over}")))
                };
                Judged { name: series_name(&labels), labels, value, verdict, note }
            })
            .collect()
    }
}

impl StepKind for Query {
    const NAME: &'static str = "prometheus.query";
    const SUMMARY: &'static str = "a PromQL query, every series judged against thresholds, now or over `for`; an empty answer or NaN fails unless told otherwise";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "series", ty: "int", help: "how many series the answer holds" },
        Output { name: "values", ty: "list", help: "each series: labels and value (null for NaN)" },
        Output { name: "worst", ty: "map", help: "the worst series: labels and value" },
    ];

    fn check(&self) -> Result<(), String> {
        let (above, below) = self.limits();
        above.check_order("warn_above", "fail_above")?;
        below.check_order("warn_below", "fail_below")?;
        if self.over.is_some_and(|d| d.std().is_zero()) {
            return Err("`for` must be longer than 0s".into());
        }
        if self.step.is_some() && self.over.is_none() {
            return Err("`step` goes with `for`: an instant query has no points to space".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let judged = match self.over {
            None => self.instant(&api(ctx, Call::get("/api/v1/query").query("query", &self.query)).await?)?,
            Some(over) => {
                let end = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
                let start = end - over.std().as_secs_f64();
                let step = self.step(over).as_secs_f64();
                let call = Call::get("/api/v1/query_range")
                    .query("query", &self.query)
                    .query("start", format!("{start:.3}"))
                    .query("end", format!("{end:.3}"))
                    .query("step", format!("{step}"));
                self.range(&api(ctx, call).await?, start, end, step, over)
            }
        };
        let window = self.over.map(|d| format!(" for the last {d}")).unwrap_or_default();
        if judged.is_empty() {
            return Ok(Outcome::new(self.on_empty.verdict(), format!("query returned 0 series{window} (on_empty: {})", self.on_empty.as_str()))
                .value("0 series")
                .threshold(self.threshold())
                .output("series", 0)
                .output("values", Vec::<Value>::new())
                .output("worst", Value::Null));
        }
        // The worst series: worst verdict, then the value furthest past the limits' side.
        let badness = |j: &Judged| if self.warn_below.is_some() || self.fail_below.is_some() { -j.value } else { j.value };
        let worst = judged
            .iter()
            .max_by(|a, b| a.verdict.cmp(&b.verdict).then(a.value.is_nan().cmp(&b.value.is_nan())).then(badness(a).total_cmp(&badness(b))))
            .expect("not empty");
        let verdict = worst.verdict;
        let nan = judged.iter().filter(|j| j.value.is_nan()).count();
        let mut message = if judged.len() == 1 {
            format!("{} = {}{window}", worst.name, number(worst.value))
        } else {
            let bad = judged.iter().filter(|j| j.verdict > Verdict::Passed).count();
            format!("{} series{window}, {bad} beyond the limits; worst {} = {}", judged.len(), worst.name, number(worst.value))
        };
        if nan > 0 {
            message.push_str(&format!("; {nan} NaN (on_nan: {})", self.on_nan.as_str()));
        }
        if let Some(note) = judged.iter().find_map(|j| j.note.as_ref().map(|n| (j, n))) {
            message.push_str(&format!("; {} crossed the limits {}, not the whole window", note.0.name, note.1));
        }
        let value_of = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        let values: Vec<Value> = judged.iter().map(|j| json!({ "labels": j.labels, "value": value_of(j.value) })).collect();
        Ok(Outcome::new(verdict, message)
            .value(number(worst.value))
            .threshold(self.threshold())
            .output("series", judged.len())
            .output("values", values)
            .output("worst", json!({ "labels": worst.labels, "value": value_of(worst.value) })))
    }
}

