//===- Metrics.cpp - what a run reports -----------------------------------===//

#include "trlc/Metrics.h"

#include <sys/resource.h>

#include <cstdio>
#include <filesystem>

namespace trlc {

void MetricsLog::open(const std::string &outputDir, bool resumed) {
  out = std::make_unique<CheckedAppend>(
      (std::filesystem::path(outputDir) / "metrics.jsonl").string(), !resumed);
}

void MetricsLog::write(const nlohmann::json &row) {
  if (out)
    out->append(row.dump() + "\n");
  history.push_back(row);
}

void MetricsLog::sync() {
  if (out)
    out->sync();
}

int64_t peakRssBytes() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

std::string clockText(double seconds) {
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld",
                static_cast<long long>(s / 3600), static_cast<long long>(s / 60 % 60),
                static_cast<long long>(s % 60));
  return buf;
}

double ProgressBar::elapsedSeconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
}

void ProgressBar::update(int64_t step, int64_t total, double loss) {
  if (!on)
    return;
  double elapsed = elapsedSeconds();
  int width = 30, filled = static_cast<int>(width * step / total);
  std::fprintf(stderr, "\r[%s%s] %lld/%lld loss %.4f  %s<%s ",
               std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
               static_cast<long long>(step), static_cast<long long>(total), loss,
               clockText(elapsed).c_str(), clockText(elapsed / step * (total - step)).c_str());
  if (step == total)
    std::fprintf(stderr, "\n");
}

} // namespace trlc
