#pragma once
// The progress line of Model::fit: batches done, loss, accuracy, samples/s
// and ETA. On a terminal it redraws one line in place; on anything else
// (a file, a pipe, a CI log) it writes one plain line per epoch, because
// carriage returns make such logs unreadable.
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

namespace npdl::model {

enum class ProgressStyle { Auto, Redraw, Lines, Silent };

/// What fit reports at the end of an epoch.
struct EpochStats {
  int epoch = 0;  // from 1
  std::int64_t batches = 0;
  double loss = 0.0, accuracy = 0.0;  // means over the epoch's batches
  std::optional<double> val_loss, val_accuracy;
  double seconds = 0.0;
  double samples_per_second = 0.0;
};

class Progress {
 public:
  /// Auto redraws when `out` is std::cout or std::cerr on a terminal.
  Progress(std::ostream* out, ProgressStyle style);

  void begin_epoch(int epoch, int epochs, std::int64_t batches);
  /// After each batch; redraws (at most every 0.1 s, and at the last batch).
  void batch(std::int64_t done, double mean_loss, double mean_accuracy, std::int64_t samples);
  void end_epoch(const EpochStats& stats);
  ProgressStyle style() const { return style_; }

  /// "12m05s", "3.2s": durations as a progress line shows them.
  static std::string format_duration(double seconds);

 private:
  using Clock = std::chrono::steady_clock;
  std::string summary(std::int64_t done, double loss, double acc, double rate, double eta) const;

  std::ostream* out_;
  ProgressStyle style_;
  int epoch_ = 0, epochs_ = 0;
  std::int64_t batches_ = 0;
  Clock::time_point start_, last_draw_;
  std::size_t last_width_ = 0;
};

}  // namespace npdl::model
