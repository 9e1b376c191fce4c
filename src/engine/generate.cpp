#include "ds4/generate.hpp"

#include <algorithm>

#include "ds4/session.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

Generation generate(Session& session, std::span<const TokenId> prompt, const GenerateOptions& options) {
    Generation g;
    if (!prompt.empty()) session.sync(prompt);
    Rng rng(options.seed);
    for (int i = 0; i < options.max_tokens; ++i) {
        const TokenId t = sample(session.logits(), options.sampling, rng);
        g.tokens.push_back(t);
        const bool stop = std::find(options.stop_tokens.begin(), options.stop_tokens.end(), t) != options.stop_tokens.end();
        if (options.on_token && !options.on_token(t)) break;
        if (stop) {
            g.stopped_by_token = true;
            break;
        }
        if (i + 1 == options.max_tokens) break;
        if (session.position() >= session.context_size()) {
            g.hit_context_limit = true;
            break;
        }
        session.decode(t);
    }
    return g;
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
