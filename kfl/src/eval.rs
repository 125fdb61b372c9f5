//! Evaluating a parsed query against a record. Nothing here allocates: values are borrowed or formatted
//! on the stack.

use crate::ast::{CmpOp, Expr, Helper, Literal, Operand};
use crate::value::{Inline, Record, Value};

pub fn eval<R: Record + ?Sized>(e: &Expr, r: &R) -> bool {
    match e {
        Expr::Or(terms) => terms.iter().any(|t| eval(t, r)),
        Expr::And(terms) => terms.iter().all(|t| eval(t, r)),
        Expr::Not(inner) => !eval(inner, r),
        Expr::Const(b) => *b,
        Expr::HasError(sel) => matches!(r.get(sel), Some(v) if !matches!(v, Value::Null)),
        Expr::Protocol { sel, name } => matches!(r.get(sel), Some(Value::Str(s)) if s.eq_ignore_ascii_case(name)),
        Expr::Truthy(sel) => match r.get(sel) {
            None | Some(Value::Null | Value::Bool(false)) => false,
            Some(Value::Num(n)) => n != 0.0,
            Some(Value::Str(s)) => !s.is_empty(),
            Some(Value::Text(t)) => !t.as_str().is_empty(),
            Some(Value::Bool(true) | Value::Present) => true,
        },
        Expr::Cmp(a, op, b) => {
            let (a, b) = (resolve(a, r), resolve(b, r));
            match (a, b) {
                (Some(a), Some(b)) => compare(&a, *op, &b),
                // Absent and null are the same thing to `== null` / `!= null` (SPEC §2: "absent or null").
                (None, Some(Value::Null)) | (Some(Value::Null), None) => *op == CmpOp::Eq,
                // A missing field makes only its own comparison false.
                _ => false,
            }
        }
        Expr::Regex { sel, re, negate } => {
            let Some(v) = r.get(sel) else { return false };
            let num;
            let text = match &v {
                Value::Num(n) => {
                    num = Inline::format(format_args!("{n}"));
                    num.as_str()
                }
                Value::Bool(b) => {
                    if *b {
                        "true"
                    } else {
                        "false"
                    }
                }
                other => match other.text() {
                    Some(t) => t.0,
                    None => return false,
                },
            };
            re.is_match(text) != *negate
        }
        Expr::Helper { sel, helper, arg } => {
            let Some(v) = r.get(sel) else { return false };
            let Some(t) = v.text() else { return false };
            match helper {
                Helper::StartsWith => t.0.starts_with(arg.as_str()),
                Helper::EndsWith => t.0.ends_with(arg.as_str()),
                Helper::Contains => t.0.contains(arg.as_str()),
            }
        }
    }
}

fn resolve<'r, R: Record + ?Sized>(o: &'r Operand, r: &'r R) -> Option<Value<'r>> {
    match o {
        Operand::Sel(sel) => r.get(sel),
        Operand::Lit(l) => Some(literal(l)),
    }
}

fn literal(l: &Literal) -> Value<'_> {
    match l {
        Literal::Str(s) => Value::Str(s),
        Literal::Num(n) => Value::Num(*n),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Null => Value::Null,
    }
}

pub fn compare_literals(a: &Literal, op: CmpOp, b: &Literal) -> bool {
    compare(&literal(a), op, &literal(b))
}

fn compare(a: &Value<'_>, op: CmpOp, b: &Value<'_>) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Value::Num(x), Value::Num(y)) => x.partial_cmp(y),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)).filter(|_| matches!(op, CmpOp::Eq | CmpOp::Ne)),
        (Value::Null, Value::Null) => Some(Ordering::Equal).filter(|_| matches!(op, CmpOp::Eq | CmpOp::Ne)),
        // A number compared with text that holds a number (a header value) compares as numbers.
        (Value::Num(x), t) | (t, Value::Num(x)) if t.text().is_some() => {
            let parsed: Option<f64> = t.text().and_then(|s| s.0.trim().parse().ok());
            match parsed {
                Some(y) if matches!(a, Value::Num(_)) => x.partial_cmp(&y),
                Some(y) => y.partial_cmp(x),
                None => None,
            }
        }
        (x, y) => match (x.text(), y.text()) {
            (Some(s), Some(t)) => Some(s.0.cmp(t.0)),
            _ => None,
        },
    };
    match ord {
        Some(o) => match op {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        },
        // Values of different kinds are never equal, never ordered.
        None => op == CmpOp::Ne,
    }
}
