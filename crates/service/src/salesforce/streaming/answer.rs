//! A connect answer read as it arrives, one message at a time: a JSON array split into its
//! top-level elements without parsing the rest, so the transport can keep what it has room
//! for and leave the remainder on the server, to be replayed (design §3 rule 9: from the
//! checkpoint) once the processor has caught up. A replay after a dropped client once came
//! back as one answer of every event since the checkpoint — more than the body cap, so it
//! was never read and the client shook hands again and again; held whole, the same answer
//! was the largest thing in the process.

/// Why an answer is not a JSON array of messages, or not one we read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SplitError {
    /// Not a JSON array (or not one of objects and arrays).
    NotAnArray,
    /// One message is larger than the cap.
    MessageTooLarge,
}

/// The element buffer is kept for the next element up to this size (a change event is a
/// kilobyte or two); a larger one is let go, so a rare large message does not stay.
const KEPT_CAPACITY: usize = 64 * 1024;

/// Splits a JSON array arriving in pieces into its elements (each an object or array),
/// holding only the element being read.
#[derive(Debug)]
pub(super) struct ArraySplitter {
    state: State,
    /// The element read so far.
    element: Vec<u8>,
    /// Nesting depth inside the element.
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Largest element accepted.
    cap: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `[`.
    Start,
    /// Between elements (after `[` or an element).
    Between,
    /// Inside an element.
    Element,
    /// After the closing `]`.
    Done,
}

impl ArraySplitter {
    /// A splitter refusing elements larger than `cap` bytes.
    pub(super) fn new(cap: usize) -> ArraySplitter {
        ArraySplitter {
            state: State::Start,
            element: Vec::new(),
            depth: 0,
            in_string: false,
            escaped: false,
            cap,
        }
    }

    /// True once the closing `]` was read.
    pub(super) fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads `bytes`, handing each complete element to `on_element`; stops early (and
    /// returns false) when `on_element` returns false.
    pub(super) fn feed(
        &mut self,
        bytes: &[u8],
        mut on_element: impl FnMut(&[u8]) -> bool,
    ) -> Result<bool, SplitError> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                State::Start => match b {
                    b'[' => self.state = State::Between,
                    b if b.is_ascii_whitespace() => {}
                    _ => return Err(SplitError::NotAnArray),
                },
                State::Between => match b {
                    b']' => self.state = State::Done,
                    b',' => {}
                    b if b.is_ascii_whitespace() => {}
                    b'{' | b'[' => {
                        self.state = State::Element;
                        self.element.clear();
                        self.element.push(b);
                        self.depth = 1;
                    }
                    _ => return Err(SplitError::NotAnArray),
                },
                State::Element => {
                    // The element's bytes in this piece are scanned first and copied in
                    // one go, into the buffer the last element left (not a byte at a
                    // time into a new one, which grew nine or ten times for an event of a
                    // kilobyte or two).
                    let start = i;
                    let ended = self.scan(bytes, &mut i);
                    let run = &bytes[start..i];
                    if self.element.len() + run.len() > self.cap {
                        return Err(SplitError::MessageTooLarge);
                    }
                    self.element.extend_from_slice(run);
                    if ended {
                        self.state = State::Between;
                        let more = on_element(&self.element);
                        if self.element.capacity() > KEPT_CAPACITY {
                            self.element = Vec::new();
                        }
                        if !more {
                            return Ok(false);
                        }
                    }
                    continue;
                }
                State::Done => {
                    if !b.is_ascii_whitespace() {
                        return Err(SplitError::NotAnArray);
                    }
                }
            }
            i += 1;
        }
        Ok(true)
    }

    /// Moves `i` past the element's bytes in `bytes`: to just after its closing bracket
    /// (true), or to the end of the piece when the element goes on in the next one.
    fn scan(&mut self, bytes: &[u8], i: &mut usize) -> bool {
        while let Some(&b) = bytes.get(*i) {
            *i += 1;
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests;
