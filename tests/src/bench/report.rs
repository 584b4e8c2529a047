//! Readable tables, with each figure's target and whether it is met, plus JSON.

use serde_json::{Value, json};

pub struct Row {
    pub metric: String,
    pub value: String,
    pub target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` no target.
    pub met: Option<bool>,
}

#[derive(Default)]
pub struct Table {
    pub title: String,
    pub rows: Vec<Row>,
    pub json: serde_json::Map<String, Value>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Table {
        Table {
            title: title.into(),
            ..Default::default()
        }
    }

    /// A figure without a target.
    pub fn add(&mut self, key: &str, metric: &str, value: impl Into<Value>, shown: String) {
        self.json.insert(key.into(), value.into());
        self.rows.push(Row {
            metric: metric.into(),
            value: shown,
            target: String::new(),
            met: None,
        });
    }

    /// A figure with a target (`met` decides the verdict).
    pub fn target(
        &mut self,
        key: &str,
        metric: &str,
        value: impl Into<Value>,
        shown: String,
        target: &str,
        met: bool,
    ) {
        self.json.insert(key.into(), value.into());
        self.json
            .insert(format!("{key}_target_met"), Value::Bool(met));
        self.rows.push(Row {
            metric: metric.into(),
            value: shown,
            target: target.into(),
            met: Some(met),
        });
    }

    pub fn note(&mut self, text: &str) {
        self.rows.push(Row {
            metric: format!("  ({text})"),
            value: String::new(),
            target: String::new(),
            met: None,
        });
    }

    pub fn print(&self) {
        let w0 = self
            .rows
            .iter()
            .map(|r| r.metric.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let w1 = self
            .rows
            .iter()
            .map(|r| r.value.len())
            .max()
            .unwrap_or(0)
            .max(5);
        let w2 = self
            .rows
            .iter()
            .map(|r| r.target.len())
            .max()
            .unwrap_or(0)
            .max(6);
        println!("\n== {} ==", self.title);
        println!("{:<w0$}  {:>w1$}  {:<w2$}  ", "metric", "value", "target");
        println!("{}", "-".repeat(w0 + w1 + w2 + 12));
        for r in &self.rows {
            let verdict = match r.met {
                Some(true) => "ok",
                Some(false) => "MISSED",
                None => "",
            };
            println!(
                "{:<w0$}  {:>w1$}  {:<w2$}  {verdict}",
                r.metric, r.value, r.target
            );
        }
    }

    pub fn to_json(&self) -> Value {
        json!({ "title": self.title, "figures": Value::Object(self.json.clone()) })
    }
}

pub fn ms(x: f64) -> String {
    format!("{:.1} ms", x * 1000.0)
}

pub fn secs(x: f64) -> String {
    format!("{x:.1} s")
}
