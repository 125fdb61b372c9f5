//! Recursive descent over the tokens. Precedence, loosest first:
//!
//! | level | operators                                  | associativity |
//! |-------|--------------------------------------------|---------------|
//! | 1     | `or`, `\|\|`                               | left          |
//! | 2     | `and`, `&&`                                | left          |
//! | 3     | `not`, `!` (prefix)                        | right         |
//! | 4     | `==` `!=` `<` `<=` `>` `>=` (one per term) | none          |
//! | 5     | selectors, literals, `( … )`, helpers      |               |
//!
//! So `!error and icmp or tcp` is `((not error) and icmp) or tcp`.

use regex::Regex;

use crate::ast::{CmpOp, Expr, Helper, Literal, Operand, Seg};

/// One side of a comparison, before we know what the comparison is.
enum Term {
    Sel(Vec<Seg>),
    Lit(Literal),
    Regex(Regex),
    Helper(Expr),
}
use crate::error::ParseError;
use crate::lexer::{lex, Tok};

/// Nesting deeper than this is refused, so hostile queries cannot overflow the stack.
const MAX_DEPTH: usize = 64;
/// Regexes are compiled with a size limit for the same reason.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = lex(src)?;
    let mut p = Parser { src, toks, pos: 0, depth: 0 };
    if matches!(p.peek(), Tok::End) {
        return Err(ParseError::at(src, 0, "empty query: expected an expression"));
    }
    let e = p.or()?;
    match p.peek() {
        Tok::End => Ok(e),
        Tok::RParen => Err(p.err("unbalanced ')': there is no '(' to close")),
        t => Err(p.err(format!("expected 'and', 'or' or the end of the query, found {}", t.describe()))),
    }
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::End, |(t, _)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.src.len(), |(_, o)| *o)
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.src, self.offset(), msg)
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == kw)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.and()?];
        while matches!(self.peek(), Tok::OrOr) || self.is_keyword("or") {
            self.bump();
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::Or(terms) })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.unary()?];
        while matches!(self.peek(), Tok::AndAnd) || self.is_keyword("and") {
            self.bump();
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::And(terms) })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if matches!(self.peek(), Tok::Bang) || self.is_keyword("not") {
            self.bump();
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.comparison()
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("query nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        if matches!(self.peek(), Tok::LParen) {
            let open = self.offset();
            self.bump();
            self.enter()?;
            let inner = self.or()?;
            self.depth -= 1;
            if !matches!(self.peek(), Tok::RParen) {
                let col = ParseError::at(self.src, open, "").column;
                return Err(self
                    .err(format!("expected ')' to close the '(' at column {col}, found {}", self.peek().describe())));
            }
            self.bump();
            return Ok(inner);
        }
        let left_at = self.offset();
        let left = self.operand()?;
        let op = match self.peek() {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            _ => {
                return match left {
                    Term::Sel(sel) => Ok(bare(sel)),
                    Term::Lit(Literal::Bool(b)) => Ok(Expr::Const(b)),
                    Term::Lit(_) => Err(ParseError::at(
                        self.src,
                        left_at,
                        "a literal alone is not a condition: compare it with a field (e.g. response.status == 500)",
                    )),
                    Term::Regex(..) => {
                        Err(ParseError::at(self.src, left_at, "a regex must be compared with a field using == or !="))
                    }
                    Term::Helper(e) => Ok(e),
                };
            }
        };
        self.bump();
        let right_at = self.offset();
        let right = self.operand()?;
        if matches!(self.peek(), Tok::Eq | Tok::Ne | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge) {
            return Err(self.err("comparisons do not chain: join them with 'and'"));
        }
        match (left, right) {
            (Term::Sel(sel), Term::Regex(re)) | (Term::Regex(re), Term::Sel(sel)) => match op {
                CmpOp::Eq | CmpOp::Ne => Ok(Expr::Regex { sel, re, negate: op == CmpOp::Ne }),
                _ => Err(ParseError::at(self.src, right_at, "a regex can only be compared with == or !=")),
            },
            (Term::Regex(..), _) | (_, Term::Regex(..)) => {
                Err(ParseError::at(self.src, right_at, "a regex must be compared with a field"))
            }
            (Term::Helper(_), _) | (_, Term::Helper(_)) => Err(ParseError::at(
                self.src,
                left_at,
                "startsWith/endsWith/contains give true or false: use them as a condition, not in a comparison",
            )),
            (Term::Sel(a), Term::Sel(b)) => Ok(Expr::Cmp(Operand::Sel(a), op, Operand::Sel(b))),
            (Term::Sel(a), Term::Lit(l)) => Ok(Expr::Cmp(Operand::Sel(a), op, Operand::Lit(l))),
            (Term::Lit(l), Term::Sel(b)) => Ok(Expr::Cmp(Operand::Lit(l), op, Operand::Sel(b))),
            (Term::Lit(a), Term::Lit(b)) => Ok(Expr::Const(crate::eval::compare_literals(&a, op, &b))),
        }
    }

    fn operand(&mut self) -> Result<Term, ParseError> {
        let at = self.offset();
        match self.bump() {
            Tok::Str(s) => Ok(Term::Lit(Literal::Str(s))),
            Tok::Num(n) => Ok(Term::Lit(Literal::Num(n))),
            Tok::Regex(r) => {
                let re = regex::RegexBuilder::new(&r)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| ParseError::at(self.src, at, format!("invalid regex: {}", first_line(&e))))?;
                Ok(Term::Regex(re))
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => Ok(Term::Lit(Literal::Bool(true))),
                "false" => Ok(Term::Lit(Literal::Bool(false))),
                "null" => Ok(Term::Lit(Literal::Null)),
                "and" | "or" | "not" => {
                    Err(ParseError::at(self.src, at, format!("expected a field, a value or '(', found '{name}'")))
                }
                _ => self.selector(name),
            },
            Tok::End => Err(ParseError::at(self.src, at, "unexpected end of query: expected a field, a value or '('")),
            t => Err(ParseError::at(self.src, at, format!("expected a field, a value or '(', found {}", t.describe()))),
        }
    }

    fn selector(&mut self, first: String) -> Result<Term, ParseError> {
        let mut segs = vec![Seg::Field(first)];
        loop {
            match self.peek() {
                Tok::Dot => {
                    self.bump();
                    let at = self.offset();
                    match self.bump() {
                        Tok::Ident(name) => {
                            if let Some(helper) = helper(&name) {
                                if matches!(self.peek(), Tok::LParen) {
                                    return self.helper_call(segs, helper);
                                }
                            }
                            segs.push(Seg::Field(name));
                        }
                        t => {
                            return Err(ParseError::at(
                                self.src,
                                at,
                                format!("expected a field name after '.', found {}", t.describe()),
                            ))
                        }
                    }
                }
                Tok::LBracket => {
                    self.bump();
                    let at = self.offset();
                    let seg = match self.bump() {
                        Tok::Str(k) => Seg::Key(k),
                        Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 && n < 1e9 => Seg::Index(n as usize),
                        t => {
                            return Err(ParseError::at(
                                self.src,
                                at,
                                format!("expected a quoted key or an index inside '[ ]', found {}", t.describe()),
                            ))
                        }
                    };
                    if !matches!(self.peek(), Tok::RBracket) {
                        return Err(self.err(format!("expected ']', found {}", self.peek().describe())));
                    }
                    self.bump();
                    segs.push(seg);
                }
                _ => return Ok(Term::Sel(segs)),
            }
        }
    }

    fn helper_call(&mut self, sel: Vec<Seg>, helper: Helper) -> Result<Term, ParseError> {
        self.bump(); // (
        let at = self.offset();
        let arg = match self.bump() {
            Tok::Str(s) => s,
            t => {
                return Err(ParseError::at(
                    self.src,
                    at,
                    format!("expected a quoted string argument, found {}", t.describe()),
                ))
            }
        };
        if !matches!(self.peek(), Tok::RParen) {
            return Err(self.err(format!("expected ')' after the argument, found {}", self.peek().describe())));
        }
        self.bump();
        Ok(Term::Helper(Expr::Helper { sel, helper, arg }))
    }
}

fn helper(name: &str) -> Option<Helper> {
    match name {
        "startsWith" => Some(Helper::StartsWith),
        "endsWith" => Some(Helper::EndsWith),
        "contains" => Some(Helper::Contains),
        _ => None,
    }
}

/// A selector standing alone: a macro if it is one of the macro names by itself, else "is it there".
fn bare(sel: Vec<Seg>) -> Expr {
    if let [Seg::Field(name)] = sel.as_slice() {
        match name.as_str() {
            "error" => return Expr::HasError(sel),
            "http" | "dns" | "tls" | "tcp" | "icmp" | "grpc" | "redis" | "postgresql" | "mysql" | "kafka" | "amqp" => {
                return Expr::Protocol { sel: vec![Seg::Field("protocol".into())], name: name.clone() }
            }
            // gRPC rides on HTTP/2: `http2` is every HTTP/2 stream, gRPC calls included.
            "http2" => {
                let protocol =
                    |name: &str| Expr::Protocol { sel: vec![Seg::Field("protocol".into())], name: name.into() };
                return Expr::Or(vec![protocol("http2"), protocol("grpc")]);
            }
            _ => {}
        }
    }
    Expr::Truthy(sel)
}

fn first_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines().rev().find(|l| l.starts_with("error:")).unwrap_or(text.lines().next().unwrap_or("")).trim().to_owned()
}
