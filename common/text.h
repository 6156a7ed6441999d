// Word tokens of a text, as keyword search and the scripted embedder see them: runs of
// letters and digits, lower-cased (ASCII); other bytes separate words.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace carapace {

std::vector<std::string> Tokenize(std::string_view text);

}  // namespace carapace
