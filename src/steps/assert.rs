//! `assert`: a condition over earlier steps' outputs.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, Severity, StepError};

/// Fail unless a condition holds: `that: "{{ steps.api.status_code == 200 }}"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assert {
    /// A `{{ }}` condition; it renders to true or false.
    pub that: Condition,
    /// What to say when it does not hold.
    #[serde(default)]
    pub message: Option<String>,
    /// `warn` to only warn when it does not hold.
    #[serde(default)]
    pub severity: Severity,
}

/// A rendered condition.
#[derive(Clone, Copy, Debug)]
pub struct Condition(pub bool);

/// As the loader reads it: a `{{ }}` condition, or a boolean.
impl JsonSchema for Condition {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Condition".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": ["string", "boolean"], "description": "A {{ }} condition, or true/false" })
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Condition, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Condition;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a condition such as \"{{ steps.api.status_code == 200 }}\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Condition, E> {
                Ok(Condition(v))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Condition, E> {
                match s.trim() {
                    _ if crate::yaml::de::is_placeholder(s) => Ok(Condition(false)),
                    "true" | "True" => Ok(Condition(true)),
                    "false" | "False" => Ok(Condition(false)),
                    _ => Err(E::custom(format!(
                        "`{s}` is not a condition; write it in braces: \"{{{{ {s} }}}}\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl StepKind for Assert {
    const NAME: &'static str = "assert";
    const SUMMARY: &'static str = "fail (or warn) unless a condition over earlier outputs holds";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[Output { name: "holds", ty: "bool", help: "whether the condition held" }];

    async fn run(&self, _ctx: &StepContext) -> Result<Outcome, StepError> {
        let verdict = self.severity.verdict(self.that.0);
        let message = match (self.that.0, &self.message) {
            (true, _) => "the condition holds".to_string(),
            (false, Some(m)) => m.clone(),
            (false, None) => "the condition does not hold".to_string(),
        };
        Ok(Outcome::new(verdict, message).output("holds", self.that.0))
    }
}
