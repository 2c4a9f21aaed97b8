//! A small synchronous D-Bus client: a connection to the system bus, method calls that wait for
//! their reply, and signals kept until asked for. No thread and no event loop, so that it may run
//! anywhere in the create path (clone.rs: no thread may exist before the clone). README says why
//! chitin has its own rather than a crate's.

pub mod wire;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use wire::Value;
use wire::{Malformed, Reader, Writer};

#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("connecting to the {bus} at {}: {source}", .path.display())]
    Connect {
        bus: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the bus: {0}")]
    Io(#[from] io::Error),
    #[error("the bus refused chitin's authentication: {0:?}")]
    Auth(String),
    #[error("bus address {0:?}: only unix:path= addresses are supported")]
    Address(String),
    #[error("the user's session bus: neither DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR is set")]
    NoSession,
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
    #[error("no answer from the bus in {0:?}")]
    Timeout(Duration),
}

impl DbusError {
    /// The D-Bus error name of an error reply.
    pub fn name(&self) -> Option<&str> {
        match self {
            DbusError::Remote { name, .. } => Some(name),
            _ => None,
        }
    }
}

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;
/// The specification's limit on a message.
const MAX_MESSAGE: usize = 128 << 20;
/// Signals kept while waiting for a reply.
const MAX_KEPT_SIGNALS: usize = 1024;

#[derive(Debug, Clone, Default)]
pub struct Message {
    pub kind: u8,
    pub reply_serial: Option<u32>,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    /// The sender's unique name, as the bus vouches for it.
    pub sender: Option<String>,
    pub body: Vec<Value>,
}

/// What a call is sent to.
pub struct Target<'a> {
    pub destination: &'a str,
    pub path: &'a str,
    pub interface: &'a str,
}

/// The bus itself: Hello, AddMatch, GetNameOwner.
pub const BUS_DRIVER: Target<'static> = Target {
    destination: "org.freedesktop.DBus",
    path: "/org/freedesktop/DBus",
    interface: "org.freedesktop.DBus",
};

pub struct Bus {
    sock: UnixStream,
    serial: u32,
    /// Signals that arrived while waiting for a reply.
    signals: VecDeque<Message>,
    timeout: Duration,
}

/// The system bus's socket: DBUS_SYSTEM_BUS_ADDRESS's (`address`) unix path, else the
/// well-known one.
fn system_bus_path(address: Option<String>) -> Result<PathBuf, DbusError> {
    match address {
        Some(addr) => unix_path(addr),
        None => Ok(PathBuf::from("/run/dbus/system_bus_socket")),
    }
}

/// The user's session bus (its systemd's, with dbus-user-session): DBUS_SESSION_BUS_ADDRESS's
/// unix path, else $XDG_RUNTIME_DIR/bus.
fn session_bus_path(
    address: Option<String>,
    runtime_dir: Option<PathBuf>,
) -> Result<PathBuf, DbusError> {
    match (address, runtime_dir) {
        (Some(addr), _) => unix_path(addr),
        (None, Some(dir)) => Ok(dir.join("bus")),
        (None, None) => Err(DbusError::NoSession),
    }
}

fn unix_path(addr: String) -> Result<PathBuf, DbusError> {
    // Several addresses may be given, ';'-separated; the first unix path is taken.
    addr.split(';')
        .filter_map(|a| a.strip_prefix("unix:"))
        .flat_map(|kv| kv.split(','))
        .find_map(|kv| kv.strip_prefix("path="))
        .map(PathBuf::from)
        .ok_or(DbusError::Address(addr))
}

impl Bus {
    /// Connects to the system bus and says Hello; each reply is waited for `timeout` at most.
    pub fn system(timeout: Duration) -> Result<Bus, DbusError> {
        let path = system_bus_path(std::env::var("DBUS_SYSTEM_BUS_ADDRESS").ok())?;
        Bus::connect("system bus", &path, timeout)
    }

    /// The same with the user's session bus.
    pub fn session(timeout: Duration) -> Result<Bus, DbusError> {
        let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty());
        let path = session_bus_path(
            std::env::var("DBUS_SESSION_BUS_ADDRESS").ok(),
            runtime_dir.map(PathBuf::from),
        )?;
        Bus::connect("user's session bus", &path, timeout)
    }

    fn connect(
        bus: &'static str,
        path: &std::path::Path,
        timeout: Duration,
    ) -> Result<Bus, DbusError> {
        let path = path.to_path_buf();
        let sock = UnixStream::connect(&path).map_err(|source| DbusError::Connect {
            bus,
            path: path.clone(),
            source,
        })?;
        sock.set_read_timeout(Some(timeout))?;
        let mut bus = Bus {
            sock,
            serial: 0,
            signals: VecDeque::new(),
            timeout,
        };
        bus.authenticate()?;
        bus.call(&BUS_DRIVER, "Hello", &[])?;
        Ok(bus)
    }

    /// SASL EXTERNAL: the bus checks our uid from the socket's credentials, which it sees as
    /// the host's (root of a user namespace is the user who made it).
    fn authenticate(&mut self) -> Result<(), DbusError> {
        let uid: String = crate::rootless::host_uid()
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.sock
            .write_all(format!("\0AUTH EXTERNAL {uid}\r\n").as_bytes())?;
        // The server says nothing more before BEGIN: a read cannot take part of a message.
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            let mut buf = [0u8; 256];
            let n = self.sock.read(&mut buf).map_err(|e| self.timed_out(e))?;
            if n == 0 || line.len() > 4096 {
                return Err(DbusError::Auth(String::from_utf8_lossy(&line).into_owned()));
            }
            line.extend_from_slice(&buf[..n]);
        }
        if !line.starts_with(b"OK ") {
            return Err(DbusError::Auth(
                String::from_utf8_lossy(&line).trim().to_owned(),
            ));
        }
        self.sock.write_all(b"BEGIN\r\n")?;
        Ok(())
    }

    fn timed_out(&self, e: io::Error) -> DbusError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => DbusError::Timeout(self.timeout),
            _ => DbusError::Io(e),
        }
    }

    /// Calls `member` and waits for its reply; an error reply is DbusError::Remote.
    pub fn call(
        &mut self,
        to: &Target<'_>,
        member: &str,
        args: &[Value],
    ) -> Result<Vec<Value>, DbusError> {
        self.serial += 1;
        let serial = self.serial;
        self.sock.write_all(&encode(to, member, args, serial))?;
        // One deadline for the reply, however many signals arrive before it.
        let deadline = Instant::now() + self.timeout;
        loop {
            let m = self.receive_by(deadline)?;
            match m.kind {
                METHOD_RETURN | ERROR if m.reply_serial == Some(serial) => {
                    if m.kind == METHOD_RETURN {
                        return Ok(m.body);
                    }
                    return Err(DbusError::Remote {
                        name: m.error_name.unwrap_or_default(),
                        message: m
                            .body
                            .first()
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    });
                }
                SIGNAL => {
                    // Kept for wait_signal, within bounds on a busy bus.
                    if self.signals.len() >= MAX_KEPT_SIGNALS {
                        self.signals.pop_front();
                    }
                    self.signals.push_back(m);
                }
                _ => {}
            }
        }
    }

    /// The first signal that `wanted` accepts, kept or still to come, waiting `within` at most.
    pub fn wait_signal(
        &mut self,
        within: Duration,
        wanted: &dyn Fn(&Message) -> bool,
    ) -> Result<Message, DbusError> {
        if let Some(i) = self.signals.iter().position(wanted) {
            return Ok(self.signals.remove(i).expect("found"));
        }
        let deadline = Instant::now() + within;
        loop {
            let m = self.receive_by(deadline)?;
            if m.kind == SIGNAL && wanted(&m) {
                return Ok(m);
            }
        }
    }

    /// The next message, if it comes before `deadline`.
    fn receive_by(&mut self, deadline: Instant) -> Result<Message, DbusError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DbusError::Timeout(self.timeout));
        }
        self.sock.set_read_timeout(Some(left))?;
        self.receive()
    }

    fn receive(&mut self) -> Result<Message, DbusError> {
        let mut fixed = [0u8; 16];
        self.sock
            .read_exact(&mut fixed)
            .map_err(|e| self.timed_out(e))?;
        let big = match fixed[0] {
            b'l' => false,
            b'B' => true,
            _ => return Err(Malformed("unknown byte order".into()).into()),
        };
        let mut r = Reader::new(&fixed, 4, big);
        let body_len = r.u32()? as usize;
        r.pos = 12;
        let fields_len = r.u32()? as usize;
        let header_len = (16usize.saturating_add(fields_len)).next_multiple_of(8);
        let total = header_len.saturating_add(body_len);
        if total > MAX_MESSAGE {
            return Err(Malformed("message over 128 MiB".into()).into());
        }
        let mut buf = fixed.to_vec();
        buf.resize(total, 0);
        self.sock
            .read_exact(&mut buf[16..])
            .map_err(|e| self.timed_out(e))?;
        decode(&buf, big, header_len)
    }
}

/// A method call, ready to send.
fn encode(to: &Target<'_>, member: &str, args: &[Value], serial: u32) -> Vec<u8> {
    let mut body = Writer::default();
    for a in args {
        body.put(a);
    }
    let field = |code: u8, v: Value| Value::Struct(vec![Value::Byte(code), Value::variant(v)]);
    let mut fields = vec![
        field(1, Value::Path(to.path.into())),
        field(2, Value::str(to.interface)),
        field(3, Value::str(member)),
        field(6, Value::str(to.destination)),
    ];
    if !args.is_empty() {
        let sig: String = args.iter().map(Value::signature).collect();
        fields.push(field(8, Value::Sig(sig)));
    }
    let mut w = Writer::default();
    let order = if cfg!(target_endian = "big") {
        b'B'
    } else {
        b'l'
    };
    for b in [order, METHOD_CALL, 0, 1] {
        w.put(&Value::Byte(b));
    }
    w.put(&Value::U32(body.buf.len() as u32));
    w.put(&Value::U32(serial));
    w.put(&Value::Array("(yv)".into(), fields));
    w.buf.resize(w.buf.len().next_multiple_of(8), 0);
    w.buf.extend_from_slice(&body.buf);
    w.buf
}

fn decode(buf: &[u8], big: bool, header_len: usize) -> Result<Message, DbusError> {
    let mut m = Message {
        kind: buf[1],
        ..Message::default()
    };
    let mut r = Reader::new(buf, 12, big);
    let mut sig: &[u8] = b"a(yv)";
    let Value::Array(_, fields) = r.get(&mut sig)? else {
        unreachable!("an array signature reads an array")
    };
    let mut body_sig = String::new();
    for f in fields {
        let Value::Struct(kv) = f else { continue };
        let (Some(Value::Byte(code)), Some(Value::Variant(v))) = (kv.first(), kv.get(1)) else {
            continue;
        };
        let s = v.as_str().map(str::to_owned);
        match (code, &**v) {
            (1, _) => m.path = s,
            (2, _) => m.interface = s,
            (3, _) => m.member = s,
            (4, _) => m.error_name = s,
            (5, Value::U32(n)) => m.reply_serial = Some(*n),
            (7, _) => m.sender = s,
            (8, _) => body_sig = s.unwrap_or_default(),
            _ => {}
        }
    }
    // The body's alignment counts from the message's start; header_len is a multiple of 8.
    let mut r = Reader::new(&buf[header_len..], 0, big);
    let mut sig = body_sig.as_bytes();
    while !sig.is_empty() {
        m.body.push(r.get(&mut sig)?);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_decodes_as_sent() {
        let to = Target {
            destination: "org.freedesktop.systemd1",
            path: "/org/freedesktop/systemd1",
            interface: "org.freedesktop.systemd1.Manager",
        };
        let args = [Value::str("x.scope"), Value::str("replace")];
        let buf = encode(&to, "StopUnit", &args, 7);
        let fields_len = u32::from_ne_bytes(buf[12..16].try_into().unwrap()) as usize;
        let header_len = (16 + fields_len).next_multiple_of(8);
        let m = decode(&buf, cfg!(target_endian = "big"), header_len).unwrap();
        assert_eq!(m.kind, METHOD_CALL);
        assert_eq!(m.member.as_deref(), Some("StopUnit"));
        assert_eq!(m.path.as_deref(), Some(to.path));
        assert_eq!(m.body, args);
    }

    #[test]
    fn the_bus_address() {
        let path = |a: Option<&str>| system_bus_path(a.map(str::to_owned));
        let two = Some("unix:abstract=x;unix:path=/tmp/bus,guid=1");
        assert_eq!(path(two).unwrap(), PathBuf::from("/tmp/bus"));
        assert!(path(Some("tcp:host=x")).is_err());
        assert_eq!(
            path(None).unwrap(),
            PathBuf::from("/run/dbus/system_bus_socket")
        );
        let session = |a: Option<&str>, d: Option<&str>| {
            session_bus_path(a.map(str::to_owned), d.map(PathBuf::from))
        };
        let run = Some("/run/user/1500");
        assert_eq!(
            session(None, run).unwrap(),
            PathBuf::from("/run/user/1500/bus")
        );
        assert_eq!(
            session(Some("unix:path=/b"), run).unwrap(),
            PathBuf::from("/b")
        );
        assert!(matches!(session(None, None), Err(DbusError::NoSession)));
    }
}
