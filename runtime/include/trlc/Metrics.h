//===- Metrics.h - what a run reports ---------------------------*- C++ -*-===//
//
// OUTPUT_DIR/metrics.jsonl (one JSON object per logged step, the keys of
// ../shared/DESIGN.md plus `runtime_allocated_bytes` and `epoch`, then the
// evaluation's), the log history checkpoints keep, the per-interval
// averages behind them, and the terminal's progress bar.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_METRICS_H
#define TRLC_RUNTIME_METRICS_H

#include "trlc/Files.h"

#include <nlohmann/json.hpp>

#include <memory>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>

namespace trlc {

/// Averages over the steps since the last logged one.
struct Interval {
  double loss = 0, seconds = 0;
  int64_t tokens = 0, steps = 0;
  void add(double stepLoss, double stepSeconds, int64_t stepTokens) {
    loss += stepLoss;
    seconds += stepSeconds;
    tokens += stepTokens;
    ++steps;
  }
};

/// metrics.jsonl and the log history; only rank 0 has one open.
class MetricsLog {
public:
  /// Opens OUTPUT_DIR/metrics.jsonl, appending when `resumed`.
  void open(const std::string &outputDir, bool resumed);
  /// Writes one row and keeps it in the history; a failed write (a full
  /// disk) throws std::runtime_error naming the file.
  void write(const nlohmann::json &row);
  /// fsyncs the file (at checkpoints and the end).
  void sync();
  nlohmann::json history = nlohmann::json::array();

private:
  std::unique_ptr<CheckedAppend> out;
};

/// Peak resident memory of this process, in bytes.
int64_t peakRssBytes();

/// "[#####.....] 3/10 loss 1.2345  0:00:04<0:00:09" on stderr, rewritten
/// in place; on when stderr is a terminal.
class ProgressBar {
public:
  explicit ProgressBar(bool on) : on(on), begin(std::chrono::steady_clock::now()) {}
  bool enabled() const { return on; }
  void update(int64_t step, int64_t total, double loss);
  double elapsedSeconds() const;

private:
  bool on;
  std::chrono::steady_clock::time_point begin;
};

/// H:MM:SS.
std::string clockText(double seconds);

} // namespace trlc

#endif // TRLC_RUNTIME_METRICS_H
