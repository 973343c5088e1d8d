//! Redis over RESP: GET/SET/APPEND, and compare-and-set as one Lua script, which Redis runs
//! atomically.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::{Datum, KvClient, OpError, OpFuture, Reply, Request};

/// Compare-and-set in one atomic step; an absent key compares equal to the empty string only
/// when the caller expects "absent" (ARGV[3] = "nil").
const CAS_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
if (v == false and ARGV[3] == 'nil') or (v ~= false and ARGV[3] ~= 'nil' and v == ARGV[1]) then \
redis.call('SET', KEYS[1], ARGV[2]) return 1 else return 0 end";

/// A parsed RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR …`
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$n …`, `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*n …`, `None` for the null array.
    Array(Option<Vec<Resp>>),
}

/// A client of one Redis server. It keeps one connection, and drops it after any error or
/// timeout: a late reply on a reused connection would be taken for the next request's.
pub struct RedisClient {
    address: String,
    integers: bool,
    connection: Mutex<Option<BufReader<TcpStream>>>,
}

impl RedisClient {
    /// A client of `host:port`.
    pub fn new(host: &str, port: u16, integers: bool) -> Self {
        Self {
            address: format!("{host}:{port}"),
            integers,
            connection: Mutex::new(None),
        }
    }

    /// Sends one command and reads its reply.
    pub async fn command(&self, args: &[&[u8]], is_read: bool) -> Result<Resp, OpError> {
        let mut slot = self.connection.lock().await;
        // Taken out for the duration of the request: if the caller gives up, the future is
        // dropped with the connection in it, so it is never reused.
        let mut connection = match slot.take() {
            Some(c) => c,
            None => BufReader::new(
                TcpStream::connect(&self.address)
                    .await
                    .map_err(|e| OpError::Failed(format!("connect {}: {e}", self.address)))?,
            ),
        };
        let lost = |e: std::io::Error| {
            let message = format!("connection to {} lost: {e}", self.address);
            if is_read {
                OpError::Failed(message)
            } else {
                OpError::Indeterminate(message)
            }
        };
        connection
            .get_mut()
            .write_all(&encode(args))
            .await
            .map_err(lost)?;
        let reply = read_reply(&mut connection, 0).await.map_err(lost)?;
        *slot = Some(connection);
        Ok(reply)
    }

    async fn run(&self, key: &str, request: &Request) -> Result<Reply, OpError> {
        let reply = match request {
            Request::Read => self.command(&[b"GET", key.as_bytes()], true).await?,
            Request::Write(v) => {
                self.command(&[b"SET", key.as_bytes(), v.to_wire().as_bytes()], false)
                    .await?
            }
            Request::Append(v) => {
                self.command(&[b"APPEND", key.as_bytes(), v.to_wire().as_bytes()], false)
                    .await?
            }
            Request::Cas { from, to } => {
                let absent: &[u8] = if *from == Datum::Nil {
                    b"nil"
                } else {
                    b"value"
                };
                self.command(
                    &[
                        b"EVAL",
                        CAS_SCRIPT.as_bytes(),
                        b"1",
                        key.as_bytes(),
                        from.to_wire().as_bytes(),
                        to.to_wire().as_bytes(),
                        absent,
                    ],
                    false,
                )
                .await?
            }
        };
        match (request, reply) {
            // Redis answers an error before it applies anything (READONLY on a replica,
            // NOREPLICAS, LOADING), so an error reply means the command did not take effect.
            (_, Resp::Error(e)) => Err(OpError::Failed(e)),
            (Request::Read, Resp::Bulk(None)) => Ok(Reply::Value(Datum::Nil)),
            (Request::Read, Resp::Bulk(Some(bytes))) => Ok(Reply::Value(Datum::from_wire(
                &String::from_utf8_lossy(&bytes),
                self.integers,
            ))),
            (Request::Write(_), Resp::Simple(_)) | (Request::Append(_), Resp::Integer(_)) => {
                Ok(Reply::Done)
            }
            (Request::Cas { .. }, Resp::Integer(n)) => Ok(Reply::Swapped(n == 1)),
            (_, other) => Err(OpError::Indeterminate(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }
}

impl KvClient for RedisClient {
    fn perform<'a>(&'a self, key: &'a str, request: &'a Request) -> OpFuture<'a> {
        Box::pin(self.run(key, request))
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

const MAX_BULK: i64 = 512 << 20;
const MAX_DEPTH: usize = 16;

/// Reads one RESP reply.
pub async fn read_reply<R: AsyncBufReadExt + Unpin + Send>(
    reader: &mut R,
    depth: usize,
) -> std::io::Result<Resp> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "server closed the connection",
        ));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line
        .split_at_checked(1)
        .ok_or_else(|| invalid("empty reply line"))?;
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| invalid("bad length in reply"))
    };
    Ok(match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Integer(number()?),
        "$" => {
            let len = number()?;
            if len < 0 {
                Resp::Bulk(None)
            } else if len > MAX_BULK {
                return Err(invalid("bulk reply too large"));
            } else {
                let mut data = vec![0; len as usize + 2];
                reader.read_exact(&mut data).await?;
                data.truncate(len as usize);
                Resp::Bulk(Some(data))
            }
        }
        "*" => {
            let len = number()?;
            if len < 0 {
                Resp::Array(None)
            } else if depth >= MAX_DEPTH || len > 1 << 20 {
                return Err(invalid("array reply too deep or too long"));
            } else {
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(Box::pin(read_reply(reader, depth + 1)).await?);
                }
                Resp::Array(Some(items))
            }
        }
        _ => return Err(invalid("unknown reply type")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_every_reply_kind() {
        let input = b"+OK\r\n-ERR no\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n".to_vec();
        let mut reader = BufReader::new(&input[..]);
        assert_eq!(
            read_reply(&mut reader, 0).await.unwrap(),
            Resp::Simple("OK".into())
        );
        assert_eq!(
            read_reply(&mut reader, 0).await.unwrap(),
            Resp::Error("ERR no".into())
        );
        assert_eq!(read_reply(&mut reader, 0).await.unwrap(), Resp::Integer(42));
        assert_eq!(
            read_reply(&mut reader, 0).await.unwrap(),
            Resp::Bulk(Some(b"abc".to_vec()))
        );
        assert_eq!(read_reply(&mut reader, 0).await.unwrap(), Resp::Bulk(None));
        assert_eq!(
            read_reply(&mut reader, 0).await.unwrap(),
            Resp::Array(Some(vec![Resp::Integer(1), Resp::Bulk(Some(vec![]))]))
        );
        assert!(read_reply(&mut reader, 0).await.is_err());
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        assert_eq!(encode(&[b"GET", b"k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
