//! The targets of the issue, judged against the measurements, and the Markdown report.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::tracer::Config;

/// Every target of the issue with what was measured; `pass` is null when its part did not run.
pub(crate) fn targets(r: &Value) -> Value {
    let mut out = Vec::new();
    let mut add = |name: &str, limit: &str, pass: Option<bool>, measured: String| {
        out.push(json!({ "target": name, "limit": limit, "measured": measured, "pass": pass }));
    };
    let at_most = |value: Option<f64>, limit: Option<f64>| Some(value? <= limit?);
    let ratio = |w: &str, t: &str| r["overhead"][w]["by_tracer"][t]["ratio"].as_f64();
    let (storm, floor) = (ratio("storm", "premain"), ratio("storm", "floor"));
    add(
        "syscall storm (not Python): premain ratio",
        "<= floor ratio + 0.02",
        at_most(storm, floor.map(|f| f + 0.02)),
        format!("premain {}, floor {}, peer {}", num(storm), num(floor), num(ratio("storm", "peer"))),
    );
    let startup = ratio("startup", "premain");
    add(
        "Python start-up: premain ratio",
        "<= 1.05",
        at_most(startup, Some(1.05)),
        format!("{} (peer {})", num(startup), num(ratio("startup", "peer"))),
    );
    let runtime = ratio("runtime", "premain");
    add(
        "Python runtime: premain ratio",
        "<= 1.10",
        at_most(runtime, Some(1.10)),
        format!("{} (peer {})", num(runtime), num(ratio("runtime", "peer"))),
    );
    let steps = r["capacity"]["steps"].as_array().cloned().unwrap_or_default();
    let clean: Vec<f64> = steps
        .iter()
        .filter(|s| {
            s["records_lost"] == 0 && s["records_decoded"].as_u64() >= s["records_generated"].as_u64()
        })
        .filter_map(|s| s["decoded_rate"].as_f64())
        .collect();
    let best = clean.iter().copied().fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    add(
        "capacity: records/s decoded with zero loss",
        ">= 200000",
        (!r["capacity"].is_null()).then(|| best.is_some_and(|b| b >= 200_000.0)),
        match best {
            Some(b) => format!("{b:.0}/s (best loss-free step)"),
            None if r["capacity"].is_null() => "not run".into(),
            None => "no step was loss-free".into(),
        },
    );
    let send = &r["capacity"]["overflow"]["send_accounting"];
    let unaccounted = send["unaccounted"].as_i64();
    add(
        "above capacity: generated = received + counted lost",
        "unaccounted = 0, with losses",
        unaccounted.map(|u| u == 0 && send["lost"].as_u64().is_some_and(|l| l > 0)),
        format!(
            "send records: generated {} = received {} + lost {} (unaccounted {})",
            send["generated"], send["received"], send["lost"], send["unaccounted"]
        ),
    );
    let extra = |by: &Value, tracer: &str| by[tracer]["extra_median_s"].as_f64().map(|s| s * 1e3);
    let (fresh, system) = (&r["first_run"]["by_tracer"], &r["first_run"]["system"]["by_tracer"]);
    let worst = [extra(fresh, "premain"), extra(system, "premain")].into_iter().flatten().reduce(f64::max);
    add(
        "first run of an unseen interpreter: over a warm run",
        "<= 20 ms",
        at_most(worst, Some(20.0)),
        format!(
            "premain {} ms (system's static interpreter {} ms), without {} ms (medians of first minus warm)",
            num(extra(fresh, "premain")),
            num(extra(system, "premain")),
            num(extra(fresh, "without"))
        ),
    );
    let p99 = r["latency"]["p99_ms"].as_f64();
    add(
        "alert latency p99 at moderate load",
        "<= 20 ms",
        at_most(p99, Some(20.0)),
        format!("p50 {} ms, p99 {} ms", num(r["latency"]["p50_ms"].as_f64()), num(p99)),
    );
    let mib = |v: &Value| v.as_f64().map(|k| k / 1024.0);
    let sleepers = mib(&r["memory"]["sleepers"]["rss"]["vm_rss_kib"]);
    add(
        "RSS idle with 1,000 tracked processes",
        "<= 40 MiB",
        at_most(sleepers, Some(40.0)),
        format!("{} MiB ({} tracked)", num(sleepers), r["memory"]["sleepers"]["tracked"]),
    );
    let loaded = mib(&r["capacity"]["rss_peak_kib"]);
    add(
        "RSS under the capacity load",
        "<= 100 MiB",
        at_most(loaded, Some(100.0)),
        format!("{} MiB peak", num(loaded)),
    );
    let churn = &r["memory"]["churn"];
    let returned = churn["returned_to_idle"].as_bool();
    add(
        "process table back to idle after the churn",
        "tracked after <= tracked before",
        returned,
        match returned {
            Some(_) => format!(
                "{} before, {} after {} processes",
                churn["tracked_before"], churn["tracked_after"], churn["processes"]
            ),
            None => "not run".into(),
        },
    );
    let vet = r["vet"]["ratio"].as_f64();
    add(
        "premain vet over the same install and imports by hand",
        "<= 1.5",
        at_most(vet, Some(1.5)),
        match vet {
            Some(ratio) => {
                format!("{ratio:.2} ({} s against {} s)", r["vet"]["vet_s"], r["vet"]["by_hand_s"])
            }
            None => "not run".into(),
        },
    );
    Value::Array(out)
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") })
}

fn ms(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |s| format!("{:.1} ms", s * 1e3))
}

pub(crate) fn markdown(r: &Value) -> String {
    let mut md = String::new();
    let m = &r["machine"];
    let _ = writeln!(md, "## premain bench, {}\n", r["date"].as_str().unwrap_or("?"));
    let _ = writeln!(
        md,
        "Machine: {}, {} CPUs, {:.0} GiB RAM, kernel {}, {}. Load average at start `{}`, at end `{}`.  ",
        m["cpu_model"].as_str().unwrap_or("?"),
        m["cpus"],
        m["mem_total_kib"].as_f64().unwrap_or(0.0) / 1048576.0,
        m["kernel"].as_str().unwrap_or("?"),
        m["os"].as_str().unwrap_or("?"),
        m["load_average_start"].as_str().unwrap_or("?"),
        r["load_average_end"].as_str().unwrap_or("?"),
    );
    let commit = r["premain"]["commit"].as_str().unwrap_or("?");
    let _ = writeln!(
        md,
        "premain {}{}, CPython {} ({}), {}. `cargo xtask bench{}`, {} s.\n",
        &commit[..commit.len().min(12)],
        if r["premain"]["dirty"] == true { " (uncommitted changes)" } else { "" },
        r["python"]["version"].as_str().unwrap_or("?"),
        r["python"]["image"].as_str().unwrap_or("?"),
        r["bpftrace"].as_str().unwrap_or("?"),
        if r["quick"] == true { " --quick" } else { "" },
        r["duration_s"],
    );
    if let Some(o) = r["overhead"].as_object() {
        let rounds = o.get("storm").map_or(0, |w| w["by_tracer"]["without"]["n"].as_u64().unwrap_or(0));
        let _ = writeln!(
            md,
            "### Overhead\n\nWall-clock medians of {rounds} interleaved rounds; a ratio is the median with the tracer over \
             the median without; brackets: the spread (q1-q3) of the same-round ratios.\n"
        );
        let _ = writeln!(
            md,
            "| workload | without | floor (no-op filter) | premain | peer (bpftrace) |\n|---|---|---|---|---|"
        );
        for (key, label) in [
            ("storm", "syscall storm (C, not Python)"),
            ("startup", "Python start-up (venv, many .pth)"),
            ("runtime", "Python runtime (1M local imports + 30k opens)"),
            ("runtime_hooked", "same, with code-running start-up hooks (recorded)"),
        ] {
            let w = &o[key]["by_tracer"];
            let cell = |t: &str| {
                let e = &w[t];
                format!(
                    "{} [{}-{}]",
                    num(e["ratio"].as_f64()),
                    num(e["paired_ratio"]["q1"].as_f64()),
                    num(e["paired_ratio"]["q3"].as_f64())
                )
            };
            let _ = writeln!(
                md,
                "| {label} | {} ({}-{}) | {} | {} | {} |",
                ms(&w["without"]["median"]),
                ms(&w["without"]["min"]),
                ms(&w["without"]["max"]),
                cell("floor"),
                cell("premain"),
                cell("peer")
            );
        }
        let _ = writeln!(
            md,
            "\nThe workload's own CPU time (user + system; kernel programs run in its context are part of it), \
             as a ratio of medians to without:\n\n| workload | floor | premain | peer |\n|---|---|---|---|"
        );
        for key in ["storm", "startup", "runtime", "runtime_hooked"] {
            let w = &o[key]["by_tracer"];
            let _ = writeln!(
                md,
                "| {key} | {} | {} | {} |",
                num(w["floor"]["cpu_ratio"].as_f64()),
                num(w["premain"]["cpu_ratio"].as_f64()),
                num(w["peer"]["cpu_ratio"].as_f64())
            );
        }
        let load = &o["other_load"]["by_tracer"];
        let _ = writeln!(
            md,
            "\nOther processes used a median {:.0}% (max {:.0}%) of the CPUs' time during the samples.",
            Config::ALL.iter().map(|c| load[c.key()]["median"].as_f64().unwrap_or(0.0)).fold(0.0, f64::max)
                * 100.0,
            Config::ALL.iter().map(|c| load[c.key()]["max"].as_f64().unwrap_or(0.0)).fold(0.0, f64::max)
                * 100.0,
        );
        let others = o["other_tracers"]["samples"].as_array().map_or(0, Vec::len);
        if others > 0 {
            let _ = writeln!(
                md,
                "\n{others} samples were taken while other premain or bpftrace processes (other people's tests) were running: see `overhead.other_tracers` in report.json."
            );
        }
        let f = &o["first_run"]["by_tracer"]["premain"];
        let _ = writeln!(
            md,
            "\nFirst `python -c pass` right after premain is ready (its exec waits until judged): median {} (then {}).\n",
            ms(&f["first_run_s"]["median"]),
            ms(&f["second_run_s"]["median"])
        );
    }
    if r["first_run"].is_object() {
        let _ = writeln!(
            md,
            "### First run of an unseen interpreter\n\n{}\n",
            r["first_run"]["what"].as_str().unwrap_or("")
        );
        let _ =
            writeln!(md, "| interpreter | tracer | first run | warm run | extra |\n|---|---|---|---|---|");
        for part in [&r["first_run"], &r["first_run"]["system"]] {
            for (tracer, t) in part["by_tracer"].as_object().into_iter().flatten() {
                let _ = writeln!(
                    md,
                    "| `{}` | {tracer} | {} | {} | {} |",
                    part["python"].as_str().unwrap_or("?"),
                    ms(&t["first_run_s"]["median"]),
                    ms(&t["warm_run_s"]["median"]),
                    ms(&t["extra_median_s"])
                );
            }
        }
        let _ = writeln!(md);
    }
    if r["enforce"].is_object() {
        let _ = writeln!(
            md,
            "### Enforcement\n\n{}\n\n| mode | start-up open p50 | p99 | runtime open p50 | p99 | start-up connect p50 | p99 | runtime connect p50 | p99 | storm | outcomes |\n|---|---|---|---|---|---|---|---|---|---|---|",
            r["enforce"]["what"].as_str().unwrap_or("")
        );
        for (mode, m) in r["enforce"]["by_mode"].as_object().into_iter().flatten() {
            let us = |v: &Value| v.as_f64().map_or("?".to_owned(), |v| format!("{v:.0} µs"));
            let cells: Vec<String> = ["startup", "runtime", "startup_connect", "runtime_connect"]
                .into_iter()
                .flat_map(|k| [us(&m[k]["p50_us"]), us(&m[k]["p99_us"])])
                .collect();
            let storm = m["storm_ms"].as_f64().map_or("?".to_owned(), |v| format!("{v:.1} ms"));
            let _ = writeln!(md, "| {mode} | {} | {storm} | {} |", cells.join(" | "), m["outcomes"]);
        }
        let _ = writeln!(md);
    }
    if r["vet"].is_object() {
        let _ = writeln!(
            md,
            "### premain vet\n\n{}\n\n| premain vet | by hand | ratio |\n|---|---|---|\n| {} s | {} s | {} |\n",
            r["vet"]["what"].as_str().unwrap_or(""),
            r["vet"]["vet_s"],
            r["vet"]["by_hand_s"],
            r["vet"]["ratio"]
        );
    }
    if let Some(c) = r["capacity"].as_object() {
        let _ = writeln!(
            md,
            "### Capacity\n\n{} interpreters at once, each opening a file thousands of times from its `sitecustomize` \
             (pre-main), all beginning together once their interpreters are up, paced to an offered total rate or unpaced; \
             a fresh `premain run` per step, whose stop summary counts the records it decoded and lost (records of other \
             processes on the node included). Decoded opens/s: from that start until an alert queued behind the last \
             record has been read.\n",
            c["steps"][0]["workers"]
        );
        let _ = writeln!(
            md,
            "| offered | records | opens made/s | decoded | lost | decoded opens/s | premain CPU per record | premain RSS peak |\n|---|---|---|---|---|---|---|---|"
        );
        for s in c["steps"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} µs | {:.1} MiB |",
                s["step"].as_str().unwrap_or("?"),
                s["records_generated"],
                num(s["generation_rate"].as_f64()),
                s["records_decoded"],
                s["records_lost"],
                num(s["decoded_rate"].as_f64()),
                num(s["daemon_cpu_us_per_record"].as_f64()),
                s["daemon_rss_peak_kib"].as_f64().unwrap_or(0.0) / 1024.0
            );
        }
        let o = &c["overflow"];
        let send = &o["send_accounting"];
        let _ = writeln!(
            md,
            "\nAbove capacity ({} KiB ring, {} interpreters sending {} datagrams each to a loopback socket, `--events`, \
             every line counted per process): {} send records generated = {} received + {} counted lost \
             (unaccounted {}).\n",
            o["ring_buffer_bytes"].as_u64().unwrap_or(0) / 1024,
            o["workers"],
            o["sends_per_worker"],
            send["generated"],
            send["received"],
            send["lost"],
            send["unaccounted"]
        );
    }
    if let Some(l) = r["latency"].as_object() {
        let _ = writeln!(
            md,
            "### Alert latency\n\n{} alerts ({}); background {} records/s. p50 {} ms, p90 {} ms, p99 {} ms, max {} ms.\n",
            l["alerts"],
            l["rules"],
            l["background_rate"],
            num(l["p50_ms"].as_f64()),
            num(l["p90_ms"].as_f64()),
            num(l["p99_ms"].as_f64()),
            num(l["max_ms"].as_f64())
        );
    }
    if let Some(mem) = r["memory"].as_object() {
        let _ = writeln!(
            md,
            "### Memory\n\n| state | tracked | VmRSS | RssAnon | RssFile |\n|---|---|---|---|---|"
        );
        let kib = |v: &Value| v.as_f64().map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k / 1024.0));
        for (label, s) in [
            ("idle", &mem["idle"]),
            ("1,000 sleeping tracked processes", &mem["sleepers"]),
            ("after the churn", &mem["churn"]),
        ] {
            let tracked = if s["tracked"].is_null() { &s["tracked_after"] } else { &s["tracked"] };
            let _ = writeln!(
                md,
                "| {label} | {tracked} | {} | {} | {} |",
                kib(&s["rss"]["vm_rss_kib"]),
                kib(&s["rss"]["rss_anon_kib"]),
                kib(&s["rss"]["rss_file_kib"])
            );
        }
        let churn = &mem["churn"];
        let _ = writeln!(
            md,
            "\nChurn: {} short-lived processes in {} s; tracked {} before, {} at the sampled peak, {} after ({} s later).",
            churn["processes"],
            num(churn["seconds"].as_f64()),
            churn["tracked_before"],
            churn["tracked_peak_sampled"],
            churn["tracked_after"],
            num(churn["seconds_to_return"].as_f64())
        );
        let maps = &mem["kernel_maps"];
        let list: Vec<String> = maps["maps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["memlock_bytes"].as_u64().unwrap_or(0) >= 64 * 1024)
            .map(|m| {
                format!(
                    "{} {:.1}",
                    m["name"].as_str().unwrap_or("?"),
                    m["memlock_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
                )
            })
            .collect();
        let _ = writeln!(
            md,
            "Kernel map memory (memlock): {:.1} MiB in all ({} MiB).\n",
            maps["memlock_total_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            list.join(", ")
        );
    }
    let _ = writeln!(md, "### Targets\n\n| target | limit | measured | result |\n|---|---|---|---|");
    for t in r["targets"].as_array().into_iter().flatten() {
        let result = match t["pass"].as_bool() {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "not run",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {result} |",
            t["target"].as_str().unwrap_or("?"),
            t["limit"].as_str().unwrap_or("?"),
            t["measured"].as_str().unwrap_or("?")
        );
    }
    md
}
