use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use monitor::{
    daemon::{self, RunOptions},
    interpreter::{self, Verdict},
};

/// premain: catches Python code touching secrets, the network or other programs before the
/// application's main code runs.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log filter for stderr (tracing EnvFilter syntax); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch every Python process on this machine (needs root).
    Run {
        /// Print each record of a tracked process as one JSON line on stdout.
        #[arg(long)]
        events: bool,
        /// Kernel ring buffer size in bytes (power of two).
        #[arg(long, default_value_t = 8 << 20)]
        ring_buffer_size: u32,
        /// Tracked processes remembered at most.
        #[arg(long, default_value_t = 65_536)]
        max_processes: usize,
        /// Repeats of an alert (same process, rule and target) within this many seconds are
        /// folded into it; its final count is printed when the window closes.
        #[arg(long, default_value_t = 30)]
        fold_window_secs: u64,
        /// Testing aid: after attaching, wait this many milliseconds before reading records.
        #[arg(long, hide = true)]
        debug_stall_reader_ms: Option<u64>,
    },
    /// Tell whether executables run CPython, and where its symbols are (JSON per line).
    Interpreter {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    let result = match cli.command {
        Command::Run { events, ring_buffer_size, max_processes, fold_window_secs, debug_stall_reader_ms } => {
            let opts = RunOptions {
                events,
                ring_buffer_bytes: ring_buffer_size,
                max_processes,
                stall_reader: debug_stall_reader_ms.map(Duration::from_millis),
                fold_window: Duration::from_secs(fold_window_secs),
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(rt) => rt.block_on(daemon::run(opts)).map_err(|e| e.to_string()),
                Err(e) => Err(format!("cannot start the async runtime: {e}")),
            }
        }
        Command::Interpreter { paths } => inspect(&paths),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("premain: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(paths: &[PathBuf]) -> Result<(), String> {
    for path in paths {
        let verdict = interpreter::recognize(path, std::path::Path::new("/")).map_err(|e| e.to_string())?;
        let line = match verdict {
            Verdict::NotPython => serde_json::json!({"path": path, "python": false}),
            Verdict::Python(i) => serde_json::json!({
                "path": path, "python": true, "image": i.image,
                "version": i.version.map(|(a, b)| format!("{a}.{b}")),
                "free_threaded": i.free_threaded, "symbols": i.symbols,
            }),
        };
        println!("{line}");
    }
    Ok(())
}
