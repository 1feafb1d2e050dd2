#include "model/progress.hpp"

#include <unistd.h>

#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace npdl::model {
namespace {

bool on_terminal(const std::ostream* out) {
  if (out == &std::cout) return ::isatty(STDOUT_FILENO) == 1;
  if (out == &std::cerr || out == &std::clog) return ::isatty(STDERR_FILENO) == 1;
  return false;
}

ProgressStyle resolve(const std::ostream* out, ProgressStyle style) {
  if (out == nullptr) return ProgressStyle::Silent;
  if (style != ProgressStyle::Auto) return style;
  return on_terminal(out) ? ProgressStyle::Redraw : ProgressStyle::Lines;
}

constexpr auto kRedrawInterval = std::chrono::milliseconds(100);

}  // namespace

Progress::Progress(std::ostream* out, ProgressStyle style)
    : out_(out), style_(resolve(out, style)) {}

std::string Progress::format_duration(double seconds) {
  std::ostringstream os;
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  if (seconds < 60) {
    os << std::fixed << std::setprecision(1) << seconds << 's';
  } else {
    const auto s = static_cast<long long>(seconds + 0.5);
    if (s >= 3600) os << s / 3600 << 'h';
    os << std::setw(s >= 3600 ? 2 : 1) << std::setfill('0') << (s % 3600) / 60 << 'm'
       << std::setw(2) << s % 60 << 's';
  }
  return os.str();
}

void Progress::begin_epoch(int epoch, int epochs, std::int64_t batches) {
  epoch_ = epoch;
  epochs_ = epochs;
  batches_ = batches;
  start_ = last_draw_ = Clock::now();
  last_width_ = 0;
}

std::string Progress::summary(std::int64_t done, double loss, double acc, double rate,
                              double eta) const {
  std::ostringstream os;
  os << "epoch " << epoch_ << '/' << epochs_ << "  " << done << '/' << batches_ << " batches"
     << std::fixed << std::setprecision(4) << "  loss " << loss << "  acc " << acc
     << std::setprecision(0) << "  " << rate << " samples/s";
  if (eta >= 0) os << "  ETA " << format_duration(eta);
  return os.str();
}

void Progress::batch(std::int64_t done, double mean_loss, double mean_accuracy,
                     std::int64_t samples) {
  if (style_ != ProgressStyle::Redraw) return;
  const auto now = Clock::now();
  if (done < batches_ && now - last_draw_ < kRedrawInterval) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? double(samples) / elapsed : 0.0;
  const double eta = done > 0 ? elapsed * double(batches_ - done) / double(done) : -1.0;
  std::string line = summary(done, mean_loss, mean_accuracy, rate, eta);
  const std::size_t width = line.size();
  if (width < last_width_) line.append(last_width_ - width, ' ');  // erase the longer last line
  last_width_ = width;
  *out_ << '\r' << line << std::flush;
}

void Progress::end_epoch(const EpochStats& s) {
  if (style_ == ProgressStyle::Silent) return;
  std::ostringstream os;
  os << summary(s.batches, s.loss, s.accuracy, s.samples_per_second, -1.0);
  os << std::fixed << std::setprecision(4);
  if (s.val_loss) os << "  val_loss " << *s.val_loss << "  val_acc " << *s.val_accuracy;
  os << "  " << format_duration(s.seconds);
  std::string line = os.str();
  if (style_ == ProgressStyle::Redraw) {
    if (line.size() < last_width_) line.append(last_width_ - line.size(), ' ');
    *out_ << '\r';
  }
  *out_ << line << '\n' << std::flush;
}

}  // namespace npdl::model
