// Cron expression parsing and matching.
#include "common/cron.h"

#include <ctime>
#include <vector>

#include "common/text.h"

namespace carapace {

namespace {

struct Field {
  const char* name;
  int min;
  int max;
  std::vector<std::string> names;  // names[i] means min + i
};

const Field kFields[] = {
    {"minute", 0, 59, {}},
    {"hour", 0, 23, {}},
    {"day of month", 1, 31, {}},
    {"month", 1, 12, {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
    {"day of week", 0, 7, {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
};

std::optional<int> Number(const std::string& s, const Field& f) {
  const std::string lower = AsciiLower(s);
  for (size_t i = 0; i < f.names.size(); ++i) {
    if (lower == f.names[i]) return f.min + static_cast<int>(i);
  }
  if (s.empty() || s.size() > 3 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  int v = std::stoi(s);
  if (v < f.min || v > f.max) return std::nullopt;
  return v;
}

// Sets the values of one field; `any` is true for a bare "*".
Status ParseField(const std::string& text, const Field& f, std::vector<bool>* set, bool* any) {
  *any = text == "*";
  auto bad = [&](const std::string& why) {
    return InvalidArgument(std::string(f.name) + " \"" + text + "\": " + why);
  };
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (part.empty()) return bad("empty list item");
    int step = 1;
    size_t slash = part.find('/');
    if (slash != std::string::npos) {
      std::string s = part.substr(slash + 1);
      if (s.empty() || s.size() > 3 || s.find_first_not_of("0123456789") != std::string::npos || std::stoi(s) == 0) {
        return bad("the step must be a positive number");
      }
      step = std::stoi(s);
      part = part.substr(0, slash);
    }
    int lo = f.min, hi = f.max;
    if (part != "*") {
      size_t dash = part.find('-');
      auto a = Number(part.substr(0, dash), f);
      if (!a) return bad("\"" + part.substr(0, dash) + "\" is not between " + std::to_string(f.min) + " and " + std::to_string(f.max));
      lo = hi = *a;
      if (dash != std::string::npos) {
        auto b = Number(part.substr(dash + 1), f);
        if (!b) return bad("\"" + part.substr(dash + 1) + "\" is not between " + std::to_string(f.min) + " and " + std::to_string(f.max));
        if (*b < *a) return bad("the range goes backwards");
        hi = *b;
      } else if (slash != std::string::npos) {
        hi = f.max;  // "5/15" means from 5 on, every 15
      }
    }
    for (int v = lo; v <= hi; v += step) (*set)[static_cast<size_t>(v)] = true;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return Status::Ok();
}

}  // namespace

Result<CronSchedule> CronSchedule::Parse(const std::string& expression) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < expression.size()) {
    while (i < expression.size() && expression[i] == ' ') ++i;
    size_t j = expression.find(' ', i);
    if (i < expression.size()) parts.push_back(expression.substr(i, j == std::string::npos ? std::string::npos : j - i));
    i = j == std::string::npos ? expression.size() : j;
  }
  if (parts.size() != 5) {
    return InvalidArgument("\"" + expression + "\" has " + std::to_string(parts.size()) +
                           " fields; a cron expression has 5: minute hour day-of-month month day-of-week");
  }
  CronSchedule c;
  for (size_t f = 0; f < 5; ++f) {
    std::vector<bool> set(static_cast<size_t>(kFields[f].max + 1), false);
    bool any = false;
    CARAPACE_RETURN_IF_ERROR(ParseField(parts[f], kFields[f], &set, &any));
    for (size_t v = 0; v < set.size(); ++v) {
      if (!set[v]) continue;
      switch (f) {
        case 0: c.minute_[v] = true; break;
        case 1: c.hour_[v] = true; break;
        case 2: c.day_[v] = true; break;
        case 3: c.month_[v] = true; break;
        case 4: c.weekday_[v % 7] = true; break;
      }
    }
    if (f == 2) c.day_any_ = any;
    if (f == 4) c.weekday_any_ = any;
  }
  return c;
}

bool CronSchedule::Matches(int64_t minute_ms) const {
  std::time_t t = static_cast<std::time_t>(minute_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  if (!minute_[static_cast<size_t>(tm.tm_min)] || !hour_[static_cast<size_t>(tm.tm_hour)] ||
      !month_[static_cast<size_t>(tm.tm_mon + 1)]) {
    return false;
  }
  const bool day = day_[static_cast<size_t>(tm.tm_mday)];
  const bool weekday = weekday_[static_cast<size_t>(tm.tm_wday)];
  if (day_any_ && weekday_any_) return true;
  if (day_any_) return weekday;
  if (weekday_any_) return day;
  return day || weekday;
}

std::optional<int64_t> CronSchedule::Next(int64_t after_ms) const {
  constexpr int64_t kMinute = 60000, kDay = 24 * 60 * kMinute;
  int64_t t = (after_ms / kMinute + 1) * kMinute;
  const int64_t limit = after_ms + 5 * 366 * kDay;
  while (t <= limit) {
    // Skip whole days that cannot match: at most 1,440 checks per matching day.
    std::time_t s = static_cast<std::time_t>(t / 1000);
    std::tm tm{};
    gmtime_r(&s, &tm);
    const bool day = day_[static_cast<size_t>(tm.tm_mday)], weekday = weekday_[static_cast<size_t>(tm.tm_wday)];
    const bool day_ok = (day_any_ && weekday_any_) || (day_any_ ? weekday : weekday_any_ ? day : (day || weekday));
    if (!month_[static_cast<size_t>(tm.tm_mon + 1)] || !day_ok) {
      t = (t / kDay + 1) * kDay;
      continue;
    }
    if (Matches(t)) return t;
    t += kMinute;
  }
  return std::nullopt;
}

}  // namespace carapace
