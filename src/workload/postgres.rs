//! PostgreSQL transactions over one session.
//!
//! Each key is a row of `schism_append (k text primary key, v bigint[])`; an append is an
//! upsert that concatenates, a register write an upsert that replaces the array with one
//! value, a read selects the array. A transaction runs at the chosen
//! isolation level and ends in `COMMIT`. What is known of its outcome:
//!
//! * any error before `COMMIT` was sent (a serialization failure, a deadlock, a lost
//!   connection) means it did not commit: **fail**, and the session rolls back;
//! * an error of `COMMIT` itself that PostgreSQL reports (serialization failure at commit)
//!   is a **fail** too; a lost connection or no answer during `COMMIT` is **unknown**.
//!
//! A session runs one transaction at a time, so every worker needs a client of its own. A
//! broken session is replaced by a new connection on the next transaction. Passwords are
//! never logged: errors carry PostgreSQL's message, not the connection settings.

use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use super::{OpError, TxnClient, TxnFuture, TxnStep};

/// The isolation level transactions run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// `READ COMMITTED`.
    ReadCommitted,
    /// `REPEATABLE READ` (snapshot isolation in PostgreSQL).
    RepeatableRead,
    /// `SERIALIZABLE` (serializable snapshot isolation).
    Serializable,
}

impl Isolation {
    fn sql(self, read_only: bool) -> &'static str {
        match (self, read_only) {
            (Isolation::ReadCommitted, false) => "BEGIN ISOLATION LEVEL READ COMMITTED",
            (Isolation::RepeatableRead, false) => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            (Isolation::Serializable, false) => "BEGIN ISOLATION LEVEL SERIALIZABLE",
            (Isolation::ReadCommitted, true) => "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
            (Isolation::RepeatableRead, true) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            (Isolation::Serializable, true) => "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
        }
    }
}

const CREATE: &str =
    "CREATE TABLE IF NOT EXISTS schism_append (k text PRIMARY KEY, v bigint[] NOT NULL)";
const READ: &str = "SELECT v FROM schism_append WHERE k = $1";
const APPEND: &str = "INSERT INTO schism_append (k, v) VALUES ($1, ARRAY[$2::bigint]) \
    ON CONFLICT (k) DO UPDATE SET v = schism_append.v || $2::bigint";
const WRITE: &str = "INSERT INTO schism_append (k, v) VALUES ($1, ARRAY[$2::bigint]) \
    ON CONFLICT (k) DO UPDATE SET v = ARRAY[$2::bigint]";

/// One session with a PostgreSQL server.
pub struct PostgresTxnClient {
    config: Config,
    isolation: Isolation,
    read_only: bool,
    session: Mutex<Option<Client>>,
}

impl PostgresTxnClient {
    /// A client that connects with `config` (host, port, user, password, database).
    pub fn new(config: Config, isolation: Isolation) -> Self {
        PostgresTxnClient {
            config,
            isolation,
            read_only: false,
            session: Mutex::new(None),
        }
    }

    /// The same client, declaring its transactions `READ ONLY` (as a hot standby requires).
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Creates the table if it is missing.
    async fn create_table(&self) -> Result<(), OpError> {
        let mut session = self.session.lock().await;
        connect(&self.config, &mut session).await?;
        let client = session.as_ref().expect("connected above");
        client
            .batch_execute(CREATE)
            .await
            .map_err(|e| OpError::Failed(describe(&e)))
    }

    async fn run(&self, steps: &[TxnStep]) -> Result<Vec<Option<Vec<i64>>>, OpError> {
        let mut session = self.session.lock().await;
        connect(&self.config, &mut session).await?;
        // Out of the slot while in use; it goes back only if it is still good.
        let client = session.take().expect("connected above");
        let result = match self.attempt(&client, steps).await {
            Ok(reads) => Ok(reads),
            Err(Attempt::Before(e)) => {
                // Nothing was committed; end the transaction if the session still stands.
                if !client.is_closed() && client.batch_execute("ROLLBACK").await.is_ok() {
                    *session = Some(client);
                }
                return Err(OpError::Failed(describe(&e)));
            }
            // PostgreSQL answered: the commit was refused and rolled back.
            Err(Attempt::DuringCommit(e)) if e.as_db_error().is_some() => {
                Err(OpError::Failed(describe(&e)))
            }
            Err(Attempt::DuringCommit(e)) => {
                return Err(OpError::Indeterminate(describe(&e)));
            }
        };
        if !client.is_closed() {
            *session = Some(client);
        }
        result
    }

    async fn attempt(
        &self,
        client: &Client,
        steps: &[TxnStep],
    ) -> Result<Vec<Option<Vec<i64>>>, Attempt> {
        client
            .batch_execute(self.isolation.sql(self.read_only))
            .await
            .map_err(Attempt::Before)?;
        let mut reads = Vec::with_capacity(steps.len());
        for step in steps {
            match step {
                TxnStep::Read { key } => {
                    let row = client
                        .query_opt(READ, &[key])
                        .await
                        .map_err(Attempt::Before)?;
                    let list: Vec<i64> = match row {
                        Some(row) => row.try_get(0).map_err(Attempt::Before)?,
                        None => Vec::new(),
                    };
                    reads.push(Some(list));
                }
                TxnStep::Append { key, value } | TxnStep::Write { key, value } => {
                    let statement = if matches!(step, TxnStep::Append { .. }) {
                        APPEND
                    } else {
                        WRITE
                    };
                    client
                        .execute(statement, &[key, value])
                        .await
                        .map_err(Attempt::Before)?;
                    reads.push(None);
                }
            }
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(Attempt::DuringCommit)?;
        Ok(reads)
    }
}

/// Where a transaction went wrong.
enum Attempt {
    /// Before `COMMIT` was sent.
    Before(tokio_postgres::Error),
    /// While committing.
    DuringCommit(tokio_postgres::Error),
}

/// The session, connecting first if there is none. A failed connection is a definite
/// failure: nothing was sent.
async fn connect(config: &Config, session: &mut Option<Client>) -> Result<(), OpError> {
    if session.as_ref().is_none_or(Client::is_closed) {
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| OpError::Failed(format!("cannot connect: {}", describe(&e))))?;
        tokio::spawn(async move {
            // Ends when the session closes; its error is the next query's.
            let _ = connection.await;
        });
        *session = Some(client);
    }
    Ok(())
}

/// PostgreSQL's own message and SQLSTATE, or the transport error.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) if db.code() == &SqlState::T_R_SERIALIZATION_FAILURE => {
            format!("serialization failure: {}", db.message())
        }
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl TxnClient for PostgresTxnClient {
    fn transact<'a>(&'a self, steps: &'a [TxnStep]) -> TxnFuture<'a> {
        Box::pin(self.run(steps))
    }

    fn prepare(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), OpError>> + Send + '_>> {
        Box::pin(self.create_table())
    }
}

/// A password, kept out of `{:?}` output and so out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps `text`.
    pub fn new(text: String) -> Self {
        Password(text)
    }

    /// The password itself, for the connection settings only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}
