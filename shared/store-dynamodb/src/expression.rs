//! Builds DynamoDB expressions clause by clause: each clause registers its own `#name` and
//! `:value` placeholders, so no expression is ever patched or assembled by hand, and a name or
//! value can never be referenced without being defined (or defined without being used).

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// An update (SET/REMOVE/ADD/DELETE clauses) and its condition, with their placeholders.
#[derive(Debug, Default, Clone)]
pub struct Expression {
    set: Vec<String>,
    remove: Vec<String>,
    add: Vec<String>,
    delete: Vec<String>,
    conditions: Vec<String>,
    projection: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

/// The finished strings and maps, ready for any request builder (`set_…` takes `Option`s, and
/// DynamoDB refuses empty maps, so empty parts are `None`).
#[derive(Debug, Clone)]
pub struct ExpressionParts {
    pub update: Option<String>,
    /// The conditions joined by `AND`: a condition, filter or key-condition expression.
    pub condition: Option<String>,
    pub projection: Option<String>,
    pub names: Option<HashMap<String, String>>,
    pub values: Option<HashMap<String, AttributeValue>>,
}

impl Expression {
    pub fn new() -> Self {
        Self::default()
    }

    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// `SET attribute = value`.
    pub fn set(mut self, attribute: &str, value: AttributeValue) -> Self {
        let (name, value) = (self.name(attribute), self.value(value));
        self.set.push(format!("{name} = {value}"));
        self
    }

    /// `SET attribute = if_not_exists(attribute, value)`: written only by the first writer.
    pub fn set_if_absent(mut self, attribute: &str, value: AttributeValue) -> Self {
        let (name, value) = (self.name(attribute), self.value(value));
        self.set
            .push(format!("{name} = if_not_exists({name}, {value})"));
        self
    }

    /// `SET attribute = list_append(if_not_exists(attribute, []), [value])`: adds to a list
    /// that may not exist yet.
    pub fn append_to_list(mut self, attribute: &str, value: AttributeValue) -> Self {
        let name = self.name(attribute);
        let empty = self.value(AttributeValue::L(Vec::new()));
        let value = self.value(AttributeValue::L(vec![value]));
        self.set.push(format!(
            "{name} = list_append(if_not_exists({name}, {empty}), {value})"
        ));
        self
    }

    /// `ADD attribute value`: adds a number to an attribute that may not exist yet (as 0).
    pub fn add(mut self, attribute: &str, value: AttributeValue) -> Self {
        let (name, value) = (self.name(attribute), self.value(value));
        self.add.push(format!("{name} {value}"));
        self
    }

    /// `ADD attribute :{value}`: puts `value` in a string set that may not exist yet
    /// (commutes with every other writer of the item).
    pub fn add_to_set(self, attribute: &str, value: &str) -> Self {
        self.add(attribute, AttributeValue::Ss(vec![value.to_owned()]))
    }

    /// `DELETE attribute :{value}`: takes `value` out of a string set (DynamoDB drops the
    /// attribute when the set becomes empty).
    pub fn delete_from_set(mut self, attribute: &str, value: &str) -> Self {
        let (name, value) = (
            self.name(attribute),
            self.value(AttributeValue::Ss(vec![value.to_owned()])),
        );
        self.delete.push(format!("{name} {value}"));
        self
    }

    /// Condition: `attribute < value` (also a sort-key condition in a Query).
    pub fn require_below(mut self, attribute: &str, value: AttributeValue) -> Self {
        let (name, value) = (self.name(attribute), self.value(value));
        self.conditions.push(format!("{name} < {value}"));
        self
    }

    /// `REMOVE attribute`.
    pub fn remove(mut self, attribute: &str) -> Self {
        let name = self.name(attribute);
        self.remove.push(name);
        self
    }

    /// Condition: `attribute = value`.
    pub fn require_equal(mut self, attribute: &str, value: AttributeValue) -> Self {
        let (name, value) = (self.name(attribute), self.value(value));
        self.conditions.push(format!("{name} = {value}"));
        self
    }

    /// Condition: `attribute IN (values…)`.
    pub fn require_in(mut self, attribute: &str, values: Vec<AttributeValue>) -> Self {
        let name = self.name(attribute);
        let values: Vec<String> = values.into_iter().map(|v| self.value(v)).collect();
        self.conditions
            .push(format!("{name} IN ({})", values.join(", ")));
        self
    }

    /// Condition: the attribute is absent.
    pub fn require_absent(mut self, attribute: &str) -> Self {
        let name = self.name(attribute);
        self.conditions
            .push(format!("attribute_not_exists({name})"));
        self
    }

    /// Condition: the attribute exists.
    pub fn require_present(mut self, attribute: &str) -> Self {
        let name = self.name(attribute);
        self.conditions.push(format!("attribute_exists({name})"));
        self
    }

    /// Condition: the attribute is absent or equals `value`.
    pub fn require_absent_or_equal(mut self, attribute: &str, value: AttributeValue) -> Self {
        let (name, value) = (self.name(attribute), self.value(value));
        self.conditions.push(format!(
            "(attribute_not_exists({name}) OR {name} = {value})"
        ));
        self
    }

    /// Condition: the list attribute (absent counts as empty) does not hold `value`.
    pub fn require_not_listed(mut self, attribute: &str, value: AttributeValue) -> Self {
        let (name, value) = (self.name(attribute), self.value(value));
        self.conditions
            .push(format!("NOT contains({name}, {value})"));
        self
    }

    /// Condition: `attribute = settled`, or `attribute = idle` while `lease` is absent or below
    /// `now` (nothing holds the record).
    pub fn require_equal_or_unleased(
        mut self,
        attribute: &str,
        settled: AttributeValue,
        idle: AttributeValue,
        lease: &str,
        now: AttributeValue,
    ) -> Self {
        let name = self.name(attribute);
        let (settled, idle) = (self.value(settled), self.value(idle));
        let (lease, now) = (self.name(lease), self.value(now));
        self.conditions.push(format!(
            "({name} = {settled} OR ({name} = {idle} AND (attribute_not_exists({lease}) OR {lease} < {now})))"
        ));
        self
    }

    /// Condition: the attribute is absent or less than `value`.
    pub fn require_absent_or_below(mut self, attribute: &str, value: AttributeValue) -> Self {
        let (name, value) = (self.name(attribute), self.value(value));
        self.conditions.push(format!(
            "(attribute_not_exists({name}) OR {name} < {value})"
        ));
        self
    }

    /// Condition: `begins_with(attribute, prefix)` (a sort-key condition in a Query).
    pub fn require_prefix(mut self, attribute: &str, prefix: &str) -> Self {
        let (name, value) = (
            self.name(attribute),
            self.value(AttributeValue::S(prefix.into())),
        );
        self.conditions
            .push(format!("begins_with({name}, {value})"));
        self
    }

    /// `attribute BETWEEN low AND high` (both inclusive): a key condition over a sort-key range.
    pub fn require_between(mut self, attribute: &str, low: &str, high: &str) -> Self {
        let name = self.name(attribute);
        let low = self.value(AttributeValue::S(low.into()));
        let high = self.value(AttributeValue::S(high.into()));
        self.conditions
            .push(format!("{name} BETWEEN {low} AND {high}"));
        self
    }

    /// Reads `attribute` only (a projection expression).
    pub fn project(mut self, attribute: &str) -> Self {
        let name = self.name(attribute);
        self.projection.push(name);
        self
    }

    /// The update and condition strings with their placeholder maps.
    pub fn build(self) -> ExpressionParts {
        let mut update = Vec::new();
        if !self.set.is_empty() {
            update.push(format!("SET {}", self.set.join(", ")));
        }
        if !self.remove.is_empty() {
            update.push(format!("REMOVE {}", self.remove.join(", ")));
        }
        if !self.add.is_empty() {
            update.push(format!("ADD {}", self.add.join(", ")));
        }
        if !self.delete.is_empty() {
            update.push(format!("DELETE {}", self.delete.join(", ")));
        }
        ExpressionParts {
            update: (!update.is_empty()).then(|| update.join(" ")),
            condition: (!self.conditions.is_empty()).then(|| self.conditions.join(" AND ")),
            projection: (!self.projection.is_empty()).then(|| self.projection.join(", ")),
            names: (!self.names.is_empty()).then_some(self.names),
            values: (!self.values.is_empty()).then_some(self.values),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_clause_registers_its_own_placeholders() {
        let parts = Expression::new()
            .set("status", AttributeValue::S("paid".into()))
            .set_if_absent("keyFirstUsedAt", AttributeValue::N("5".into()))
            .remove("leaseUntil")
            .require_in(
                "status",
                vec![
                    AttributeValue::S("submitting".into()),
                    AttributeValue::S("processing".into()),
                ],
            )
            .require_absent_or_equal("providerPayoutId", AttributeValue::S("tr_1".into()))
            .build();
        assert_eq!(
            parts.update.as_deref(),
            Some(
                "SET #status = :v0, #keyFirstUsedAt = if_not_exists(#keyFirstUsedAt, :v1) REMOVE #leaseUntil"
            )
        );
        assert_eq!(
            parts.condition.as_deref(),
            Some(
                "#status IN (:v2, :v3) AND (attribute_not_exists(#providerPayoutId) OR #providerPayoutId = :v4)"
            )
        );
        assert_eq!(parts.names.unwrap().len(), 4);
        assert_eq!(parts.values.unwrap().len(), 5);
    }

    #[test]
    fn empty_parts_are_none() {
        let parts = Expression::new().require_absent("pk").build();
        assert_eq!(parts.update, None);
        assert_eq!(parts.values, None);
        assert_eq!(
            parts.condition.as_deref(),
            Some("attribute_not_exists(#pk)")
        );
    }
}
