//! The D-Bus wire format (the specification's "Marshaling" section) for the types chitin's calls
//! to systemd use: typed values with their signatures, written in this host's byte order and read
//! in either.

/// A D-Bus value. An array carries its element signature, so that an empty one has a type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Byte(u8),
    Bool(bool),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Path(String),
    Sig(String),
    Array(String, Vec<Value>),
    Struct(Vec<Value>),
    Variant(Box<Value>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    pub fn variant(v: Value) -> Value {
        Value::Variant(Box::new(v))
    }

    pub fn signature(&self) -> String {
        match self {
            Value::Byte(_) => "y".into(),
            Value::Bool(_) => "b".into(),
            Value::I32(_) => "i".into(),
            Value::U32(_) => "u".into(),
            Value::I64(_) => "x".into(),
            Value::U64(_) => "t".into(),
            Value::F64(_) => "d".into(),
            Value::Str(_) => "s".into(),
            Value::Path(_) => "o".into(),
            Value::Sig(_) => "g".into(),
            Value::Array(elem, _) => format!("a{elem}"),
            Value::Struct(fields) => {
                let inner: String = fields.iter().map(Value::signature).collect();
                format!("({inner})")
            }
            Value::Variant(_) => "v".into(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Path(s) | Value::Sig(s) => Some(s),
            _ => None,
        }
    }
}

/// A message that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed D-Bus message: {0}")]
pub struct Malformed(pub String);

fn malformed<T>(what: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(what.into()))
}

/// The alignment of the type a signature starts with.
fn alignment(sig: u8) -> usize {
    match sig {
        b'y' | b'g' | b'v' => 1,
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b's' | b'o' | b'a' | b'h' => 4,
        _ => 8, // x t d ( {
    }
}

/// Values appended to a buffer whose offset 0 is 8-aligned (a message's start or its body's).
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, align: usize) {
        while self.buf.len() % align != 0 {
            self.buf.push(0);
        }
    }

    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_ne_bytes());
    }

    pub fn put(&mut self, v: &Value) {
        match v {
            Value::Byte(b) => self.buf.push(*b),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::I32(n) => self.u32(*n as u32),
            Value::U32(n) => self.u32(*n),
            Value::I64(n) => self.u64(*n as u64),
            Value::U64(n) => self.u64(*n),
            Value::F64(n) => self.u64(n.to_bits()),
            Value::Str(s) | Value::Path(s) => {
                self.u32(s.len() as u32);
                self.buf.extend_from_slice(s.as_bytes());
                self.buf.push(0);
            }
            Value::Sig(s) => {
                self.buf.push(s.len() as u8);
                self.buf.extend_from_slice(s.as_bytes());
                self.buf.push(0);
            }
            Value::Array(elem, items) => {
                self.u32(0);
                let len_at = self.buf.len() - 4;
                // The padding to the first element is not part of the length.
                self.pad(alignment(elem.as_bytes()[0]));
                let start = self.buf.len();
                for item in items {
                    self.put(item);
                }
                let len = (self.buf.len() - start) as u32;
                self.buf[len_at..len_at + 4].copy_from_slice(&len.to_ne_bytes());
            }
            Value::Struct(fields) => {
                self.pad(8);
                for f in fields {
                    self.put(f);
                }
            }
            Value::Variant(inner) => {
                self.put(&Value::Sig(inner.signature()));
                self.put(inner);
            }
        }
    }

    fn u64(&mut self, v: u64) {
        self.pad(8);
        self.buf.extend_from_slice(&v.to_ne_bytes());
    }
}

/// Values read from a message whose byte 0 is `buf[0]`, in the byte order it declares.
pub struct Reader<'a> {
    buf: &'a [u8],
    pub pos: usize,
    big: bool,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], pos: usize, big: bool) -> Reader<'a> {
        Reader { buf, pos, big }
    }

    fn align(&mut self, a: usize) -> Result<(), Malformed> {
        let next = self.pos.next_multiple_of(a);
        if next > self.buf.len() {
            return malformed("truncated");
        }
        self.pos = next;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let Some(end) = end else {
            return malformed("truncated");
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// N bytes, aligned to N, in the message's byte order turned into the host's (big-endian
    /// bytes are reversed into little-endian order, which from_le_bytes reads).
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        self.align(N)?;
        let mut b: [u8; N] = self.take(N)?.try_into().expect("N bytes");
        if self.big {
            b.reverse();
        }
        Ok(b)
    }

    pub fn u32(&mut self) -> Result<u32, Malformed> {
        self.fixed().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        self.fixed().map(u64::from_le_bytes)
    }

    fn text(&mut self, len: usize) -> Result<String, Malformed> {
        let Some(with_nul) = len.checked_add(1) else {
            return malformed("string too long");
        };
        let bytes = self.take(with_nul)?;
        if bytes[len] != 0 {
            return malformed("string without its nul");
        }
        String::from_utf8(bytes[..len].to_vec()).or_else(|_| malformed("string not UTF-8"))
    }

    /// Reads one complete type from the front of `sig`, which is left at what follows it.
    pub fn get(&mut self, sig: &mut &[u8]) -> Result<Value, Malformed> {
        self.get_at(sig, 0)
    }

    fn get_at(&mut self, sig: &mut &[u8], depth: u32) -> Result<Value, Malformed> {
        // The specification's limit on nesting (32 arrays and 32 structs).
        if depth > 64 {
            return malformed("nested too deeply");
        }
        let Some((&c, rest)) = sig.split_first() else {
            return malformed("signature ended early");
        };
        *sig = rest;
        Ok(match c {
            b'y' => Value::Byte(self.take(1)?[0]),
            b'b' => Value::Bool(self.u32()? != 0),
            b'n' | b'q' => Value::U32(u32::from(self.fixed().map(u16::from_le_bytes)?)),
            b'i' => Value::I32(self.u32()? as i32),
            b'u' | b'h' => Value::U32(self.u32()?),
            b'x' => Value::I64(self.u64()? as i64),
            b't' => Value::U64(self.u64()?),
            b'd' => Value::F64(f64::from_bits(self.u64()?)),
            b's' | b'o' => {
                let len = self.u32()? as usize;
                let s = self.text(len)?;
                if c == b's' {
                    Value::Str(s)
                } else {
                    Value::Path(s)
                }
            }
            b'g' => {
                let len = self.take(1)?[0] as usize;
                Value::Sig(self.text(len)?)
            }
            b'v' => {
                let len = self.take(1)?[0] as usize;
                let inner = self.text(len)?;
                let mut isig = inner.as_bytes();
                let v = self.get_at(&mut isig, depth + 1)?;
                if !isig.is_empty() {
                    return malformed("variant of more than one type");
                }
                Value::variant(v)
            }
            b'a' => self.array(sig, depth)?,
            b'(' => Value::Struct(self.fields(sig, b')', depth)?),
            b'{' => Value::Struct(self.fields(sig, b'}', depth)?),
            other => return malformed(format!("type {:?} not supported", other as char)),
        })
    }

    /// An array: its length in bytes, then elements of the type at the front of `sig`.
    fn array(&mut self, sig: &mut &[u8], depth: u32) -> Result<Value, Malformed> {
        let len = self.u32()? as usize;
        let elem_sig = *sig;
        let Some(&first) = elem_sig.first() else {
            return malformed("array without an element type");
        };
        self.align(alignment(first))?;
        let Some(end) = self.pos.checked_add(len).filter(|e| *e <= self.buf.len()) else {
            return malformed("array longer than the message");
        };
        let mut items = Vec::new();
        let mut after = elem_sig;
        // An empty array still has to skip its element's signature.
        if len == 0 {
            skip_type(&mut after)?;
        }
        while self.pos < end {
            after = elem_sig;
            let before = self.pos;
            items.push(self.get_at(&mut after, depth + 1)?);
            // An element of no bytes would never end the array; one past it is not in it.
            if self.pos == before || self.pos > end {
                return malformed("array elements do not fill its length");
            }
        }
        let used = elem_sig.len() - after.len();
        *sig = after;
        let elem = String::from_utf8_lossy(&elem_sig[..used]).into_owned();
        Ok(Value::Array(elem, items))
    }

    /// A struct's or dict entry's fields, up to `close`.
    fn fields(&mut self, sig: &mut &[u8], close: u8, depth: u32) -> Result<Vec<Value>, Malformed> {
        self.align(8)?;
        if sig.first() == Some(&close) {
            return malformed("empty struct");
        }
        let mut fields = Vec::new();
        while sig.first() != Some(&close) {
            fields.push(self.get_at(sig, depth + 1)?);
        }
        *sig = &sig[1..];
        Ok(fields)
    }
}

/// Moves `sig` past one complete type.
fn skip_type(sig: &mut &[u8]) -> Result<(), Malformed> {
    let Some((&c, rest)) = sig.split_first() else {
        return malformed("signature ended early");
    };
    *sig = rest;
    match c {
        b'a' => skip_type(sig),
        b'(' | b'{' => {
            let close = if c == b'(' { b')' } else { b'}' };
            while sig.first() != Some(&close) {
                skip_type(sig)?;
            }
            *sig = &sig[1..];
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: Value) {
        let mut w = Writer::default();
        w.put(&v);
        let sig = v.signature();
        let mut s = sig.as_bytes();
        let got = Reader::new(&w.buf, 0, cfg!(target_endian = "big"))
            .get(&mut s)
            .unwrap();
        assert_eq!(got, v);
        assert!(s.is_empty());
    }

    #[test]
    fn values_come_back_as_written() {
        let props = Value::Array(
            "(sv)".into(),
            vec![
                Value::Struct(vec![
                    Value::str("Delegate"),
                    Value::variant(Value::Bool(true)),
                ]),
                Value::Struct(vec![
                    Value::str("PIDs"),
                    Value::variant(Value::Array("u".into(), vec![Value::U32(42)])),
                ]),
                Value::Struct(vec![
                    Value::str("MemoryMax"),
                    Value::variant(Value::U64(u64::MAX)),
                ]),
            ],
        );
        round_trip(props);
        round_trip(Value::Array("(sa(sv))".into(), vec![]));
        round_trip(Value::Struct(vec![
            Value::Byte(7),
            Value::Path("/org/x".into()),
            Value::I64(-3),
        ]));
    }

    #[test]
    fn the_spec_s_layout() {
        // A string is a u32 length, the bytes and a nul; an array of u64 pads to 8 after its
        // length, and that padding is not counted in it.
        let mut w = Writer::default();
        w.put(&Value::str("ab"));
        w.put(&Value::Array("t".into(), vec![Value::U64(1)]));
        let n = |v: u32| v.to_ne_bytes();
        let mut want = Vec::new();
        want.extend_from_slice(&n(2));
        want.extend_from_slice(b"ab\0");
        want.push(0); // to 4
        want.extend_from_slice(&n(8));
        want.extend_from_slice(&[0; 4]); // to 8
        want.extend_from_slice(&1u64.to_ne_bytes());
        assert_eq!(w.buf, want);
    }

    #[test]
    fn big_endian_input_is_read() {
        // "(ut)" from a big-endian peer.
        let mut buf = vec![0, 0, 0, 5, 0, 0, 0, 0];
        buf.extend_from_slice(&9u64.to_be_bytes());
        let mut s: &[u8] = b"(ut)";
        let v = Reader::new(&buf, 0, true).get(&mut s).unwrap();
        assert_eq!(v, Value::Struct(vec![Value::U32(5), Value::U64(9)]));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut s: &[u8] = b"s";
        assert!(
            Reader::new(&[9, 0, 0, 0, b'a'], 0, false)
                .get(&mut s)
                .is_err()
        );
        let mut s: &[u8] = b"a";
        assert!(Reader::new(&[0, 0, 0, 0], 0, false).get(&mut s).is_err());
        let mut s: &[u8] = b"ai";
        assert!(
            Reader::new(&[255, 255, 255, 255], 0, false)
                .get(&mut s)
                .is_err()
        );
        // An array of empty structs would loop for ever; an element past the array's end.
        let mut s: &[u8] = b"a()";
        assert!(
            Reader::new(&[8, 0, 0, 0, 0, 0, 0, 0], 0, false)
                .get(&mut s)
                .is_err()
        );
        let mut s: &[u8] = b"at";
        let mut buf = vec![4, 0, 0, 0, 0, 0, 0, 0];
        buf.extend_from_slice(&[0; 8]);
        assert!(Reader::new(&buf, 0, false).get(&mut s).is_err());
    }
}
