//! The SOQL parser: tokens → [`Query`], by recursive descent over the subset the module
//! documents.

use chrono::{DateTime, NaiveDate, Utc};

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    DateTime(DateTime<Utc>),
    Date(NaiveDate),
    /// A relative date literal: `[start, end)` computed at evaluation time.
    Relative(RelativeDate),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum RelativeDate {
    Today,
    Yesterday,
    Tomorrow,
    NextNDays(i64),
    LastNDays(i64),
}

#[derive(Debug, Clone)]
pub(super) struct FieldRef {
    pub(super) path: String,
    pub(super) pos: usize,
}

#[derive(Debug, Clone)]
pub(super) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp {
        field: FieldRef,
        op: CmpOp,
        value: Lit,
        value_pos: usize,
    },
    In {
        field: FieldRef,
        negated: bool,
        values: Vec<(Lit, usize)>,
    },
    Like {
        field: FieldRef,
        pattern: String,
    },
}

#[derive(Debug, Clone)]
pub(super) struct OrderKey {
    pub(super) field: FieldRef,
    pub(super) descending: bool,
    pub(super) nulls_last: bool,
}

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    pub(super) select: Vec<FieldRef>,
    pub(super) from: FieldRef,
    pub(super) filter: Option<Expr>,
    pub(super) order: Vec<OrderKey>,
    pub(super) limit: Option<usize>,
    pub(super) offset: Option<usize>,
    pub(super) soql: String,
}

pub(super) struct Parser<'a> {
    pub(super) src: &'a Source<'a>,
    pub(super) tokens: Vec<Token>,
    pub(super) at: usize,
}

impl Parser<'_> {
    pub(super) fn peek(&self) -> &Token {
        &self.tokens[self.at]
    }

    pub(super) fn next(&mut self) -> Token {
        let t = self.tokens[self.at].clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        t
    }

    pub(super) fn is_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().tok, Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    pub(super) fn eat_keyword(&mut self, keyword: &str) -> bool {
        if self.is_keyword(keyword) {
            self.next();
            true
        } else {
            false
        }
    }

    pub(super) fn expect_keyword(&mut self, keyword: &str) -> Result<(), SoqlError> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            Err(self.src.malformed(self.peek()))
        }
    }

    pub(super) fn expect(&mut self, tok: Tok) -> Result<Token, SoqlError> {
        if self.peek().tok == tok {
            Ok(self.next())
        } else {
            Err(self.src.malformed(self.peek()))
        }
    }

    /// A field path or object name (not a reserved word).
    pub(super) fn name(&mut self) -> Result<FieldRef, SoqlError> {
        match &self.peek().tok {
            Tok::Word(w) if !is_reserved(w) => {
                let t = self.next();
                Ok(FieldRef {
                    path: t.text,
                    pos: t.pos,
                })
            }
            _ => Err(self.src.malformed(self.peek())),
        }
    }

    pub(super) fn count(&mut self) -> Result<usize, SoqlError> {
        let t = self.next();
        match t.tok {
            Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 => Ok(n as usize),
            _ => Err(self.src.malformed(&t)),
        }
    }

    pub(super) fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_keyword("SELECT")?;
        let mut select = vec![self.name()?];
        while self.peek().tok == Tok::Comma {
            self.next();
            select.push(self.name()?);
        }
        self.expect_keyword("FROM")?;
        let from = self.name()?;
        let filter = if self.eat_keyword("WHERE") {
            Some(self.condition()?)
        } else {
            None
        };
        let mut order = Vec::new();
        if self.eat_keyword("ORDER") {
            self.expect_keyword("BY")?;
            loop {
                let field = self.name()?;
                let descending = if self.eat_keyword("DESC") {
                    true
                } else {
                    self.eat_keyword("ASC");
                    false
                };
                // SOQL default: NULLS FIRST ascending, NULLS LAST descending.
                let mut nulls_last = descending;
                if self.eat_keyword("NULLS") {
                    if self.eat_keyword("LAST") {
                        nulls_last = true;
                    } else {
                        self.expect_keyword("FIRST")?;
                        nulls_last = false;
                    }
                }
                order.push(OrderKey {
                    field,
                    descending,
                    nulls_last,
                });
                if self.peek().tok != Tok::Comma {
                    break;
                }
                self.next();
            }
        }
        let limit = if self.eat_keyword("LIMIT") {
            Some(self.count()?)
        } else {
            None
        };
        let offset = if self.eat_keyword("OFFSET") {
            Some(self.count()?)
        } else {
            None
        };
        if self.peek().tok != Tok::Eof {
            return Err(self.src.malformed(self.peek()));
        }
        Ok(Query {
            select,
            from,
            filter,
            order,
            limit,
            offset,
            soql: self.src.soql.to_string(),
        })
    }

    /// Terms joined by one connective; SOQL rejects `a AND b OR c` without parentheses.
    pub(super) fn condition(&mut self) -> Result<Expr, SoqlError> {
        let first = self.term()?;
        let connective = if self.is_keyword("AND") {
            "AND"
        } else if self.is_keyword("OR") {
            "OR"
        } else {
            return Ok(first);
        };
        let mut terms = vec![first];
        while self.eat_keyword(connective) {
            terms.push(self.term()?);
        }
        if self.is_keyword("AND") || self.is_keyword("OR") {
            return Err(self.src.malformed(self.peek()));
        }
        Ok(if connective == "AND" {
            Expr::And(terms)
        } else {
            Expr::Or(terms)
        })
    }

    pub(super) fn term(&mut self) -> Result<Expr, SoqlError> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.term()?)));
        }
        if self.peek().tok == Tok::LParen {
            self.next();
            let inner = self.condition()?;
            self.expect(Tok::RParen)?;
            return Ok(inner);
        }
        let field = self.name()?;
        if self.eat_keyword("LIKE") {
            let t = self.next();
            return match t.tok {
                Tok::Str(pattern) => Ok(Expr::Like { field, pattern }),
                _ => Err(self.src.malformed(&t)),
            };
        }
        let negated = if self.is_keyword("NOT") {
            self.next();
            if !self.is_keyword("IN") {
                return Err(self.src.malformed(self.peek()));
            }
            true
        } else {
            false
        };
        if self.eat_keyword("IN") {
            self.expect(Tok::LParen)?;
            let mut values = Vec::new();
            loop {
                let pos = self.peek().pos;
                values.push((self.literal()?, pos));
                if self.peek().tok == Tok::Comma {
                    self.next();
                    continue;
                }
                self.expect(Tok::RParen)?;
                break;
            }
            return Ok(Expr::In {
                field,
                negated,
                values,
            });
        }
        let t = self.next();
        let op = match t.tok {
            Tok::Op(op) => op,
            _ => return Err(self.src.malformed(&t)),
        };
        let value_pos = self.peek().pos;
        let value = self.literal()?;
        Ok(Expr::Cmp {
            field,
            op,
            value,
            value_pos,
        })
    }

    pub(super) fn literal(&mut self) -> Result<Lit, SoqlError> {
        let t = self.next();
        let lit = match &t.tok {
            Tok::Str(s) => Lit::Str(s.clone()),
            Tok::Num(n) => Lit::Num(*n),
            Tok::DateTime(d) => Lit::DateTime(*d),
            Tok::Date(d) => Lit::Date(*d),
            Tok::Word(w) => match w.to_ascii_uppercase().as_str() {
                "TRUE" => Lit::Bool(true),
                "FALSE" => Lit::Bool(false),
                "NULL" => Lit::Null,
                "TODAY" => Lit::Relative(RelativeDate::Today),
                "YESTERDAY" => Lit::Relative(RelativeDate::Yesterday),
                "TOMORROW" => Lit::Relative(RelativeDate::Tomorrow),
                "NEXT_N_DAYS" | "LAST_N_DAYS" => {
                    self.expect(Tok::Colon)?;
                    let n = self.count()? as i64;
                    if w.eq_ignore_ascii_case("NEXT_N_DAYS") {
                        Lit::Relative(RelativeDate::NextNDays(n))
                    } else {
                        Lit::Relative(RelativeDate::LastNDays(n))
                    }
                }
                _ => return Err(self.src.malformed(&t)),
            },
            _ => return Err(self.src.malformed(&t)),
        };
        Ok(lit)
    }
}

pub(super) fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
        "NULLS", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE", "GROUP", "HAVING",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// Parses a query (syntax only; names are checked by [`execute`]).
pub fn parse(soql: &str) -> Result<Query, SoqlError> {
    let src = Source { soql };
    let tokens = lex(&src)?;
    Parser {
        src: &src,
        tokens,
        at: 0,
    }
    .query()
}
