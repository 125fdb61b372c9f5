//! What a query means, after parsing.

use regex::Regex;

/// One step of a selector: `.name` or `["key"]` or `[0]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Seg {
    Field(String),
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helper {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Clone, Debug)]
pub enum Operand {
    Sel(Vec<Seg>),
    Lit(Literal),
}

#[derive(Clone, Debug)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, CmpOp, Operand),
    /// `selector == r"…"` (or `!=`): a regex search on the field's text.
    Regex {
        sel: Vec<Seg>,
        re: Regex,
        negate: bool,
    },
    /// `selector.startsWith("…")` and friends.
    Helper {
        sel: Vec<Seg>,
        helper: Helper,
        arg: String,
    },
    /// A bare selector: true when the field exists and is not null, false, 0 or "".
    Truthy(Vec<Seg>),
    /// `http`, `dns`, `tcp`, `icmp`: the entry's protocol (`sel` is the path to `protocol`).
    Protocol {
        sel: Vec<Seg>,
        name: String,
    },
    /// `error`: the entry has an error (`sel` is the path to `error`).
    HasError(Vec<Seg>),
    Const(bool),
}
