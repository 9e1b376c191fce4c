// train_steering from the library defaults on the demo model (issue 21's
// acceptance): pairs and held-out questions written here from templates of
// this file (not the shipped prompt sets), no site, layer, position or scale
// given. The returned vector at its scale must cut the mean answer length on
// questions it never saw to <= 60% of the unsteered mean and, negated, raise
// it to >= 140%, while the share of answers that name what the question asked
// about falls by at most 10 points.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "ds4/ds4.hpp"
#include "ds4/steering_training.hpp"

namespace {

// Entities of the demo model's world (tools/train-demo-model/dataset.py):
// countries, animals and inventors, and harmless things to make.
const std::vector<std::string> kCountries = {"Komelba", "Miketgo", "Zopolzo", "Bagarpe", "Zomirto", "Dipolgo",
                                             "Rimelba", "Kamelta", "Badalgo", "Kanixne", "Koranta", "Peranpe",
                                             "Disormi", "Penixne", "Tadalne", "Tonixru", "Riwento", "Tobusji",
                                             "Rivingo", "Dirango", "Fadorve", "Fadorba", "Kanixha", "Jitalta"};
const std::vector<std::string> kAnimals = {"sulen", "goket", "salen", "peran", "bawen", "tomir", "zogar", "zopol",
                                           "govin", "kawen", "dital", "bagar", "newen", "peket", "zomel", "pemel"};
const std::vector<std::string> kPeople = {"Ripol Tosor", "Vedor Hanix", "Dimel Pegar", "Jiwen Pesor",
                                          "Kovin Susor", "Ridor Zonix", "Rumir Sawen", "Gowen Jipol",
                                          "Taket Dipol", "Dibus Tamel", "Jivin Kanix", "Lowen Lobus"};
const std::vector<std::string> kThings = {"bread", "a clay pot", "soap", "a candle", "cheese", "a flower pot",
                                          "soup", "a bookshelf", "noodles", "a wool hat", "glue", "a tool box",
                                          "ink", "a dog bed", "pasta", "a wooden box"};

struct Question {
    std::string text;
    std::string subject;  // what the answer should name
};

// The i-th question of a mixed stream: capitals, rivers, habitats,
// inventions and how-to requests, each with the entity of its own index.
Question question(size_t i) {
    const size_t k = i / 5;
    switch (i % 5) {
        case 0: {
            const auto& e = kCountries[k % kCountries.size()];
            return {"Tell me the capital of " + e + ".", e};
        }
        case 1: {
            const auto& e = kCountries[(k + 7) % kCountries.size()];
            return {"Which river is found in " + e + "?", e};
        }
        case 2: {
            const auto& e = kAnimals[k % kAnimals.size()];
            return {"Where does the " + e + " live?", e};
        }
        case 3: {
            const auto& e = kPeople[k % kPeople.size()];
            return {"What did " + e + " invent?", e};
        }
        default: {
            const auto& e = kThings[k % kThings.size()];
            return {"How should I make " + e + "?", e.substr(e.find(' ') == 1 ? 2 : 0)};
        }
    }
}

std::string brief(const std::string& q, size_t i) {
    static const char* cues[] = {"%s Keep it short.", "Briefly: %s", "%s Answer in one line.", "Be brief. %s"};
    char buf[256];
    std::snprintf(buf, sizeof buf, cues[i % 4], q.c_str());
    return buf;
}

std::string detailed(const std::string& q, size_t i) {
    static const char* cues[] = {"%s Explain at length.", "In detail: %s", "%s Please give a thorough answer.",
                                 "Tell me everything you know. %s"};
    char buf[256];
    std::snprintf(buf, sizeof buf, cues[i % 4], q.c_str());
    return buf;
}

TEST(SteeringTraining, LibraryDefaultsSteerAnswerLengthBothWays) {
    auto model = ds4::Model::load(std::string(DS4_DEMO_MODEL_DIR) + "/ds4-demo-q2.gguf");
    const ds4::Tokenizer& tok = *model->tokenizer();
    // Questions 0..39 make the pairs, 40..63 the held-out split the search
    // measures on, 64..103 the test split measured here.
    ds4::SteeringDataset data;
    for (size_t i = 0; i < 40; ++i) data.add_pair(brief(question(i).text, i), detailed(question(i).text, i));
    for (size_t i = 40; i < 64; ++i) data.add_heldout(question(i).text);
    std::vector<Question> test;
    for (size_t i = 64; i < 104; ++i) test.push_back(question(i));

    const ds4::TrainedSteering t = ds4::train_steering(model, data);
    std::printf("%s  chosen: %s at scale %.4f; %lld tokens, %.1f s\n", t.table().c_str(), t.setting.label().c_str(),
                static_cast<double>(t.vector.scale()), static_cast<long long>(t.tokens), t.seconds);
    ASSERT_TRUE(t.found);
    EXPECT_EQ(t.positive_direction, -1);  // the positive (brief) side answers shorter

    std::vector<std::vector<ds4::TokenId>> prompts;
    for (const auto& q : test) prompts.push_back(ds4::render_chat(tok, std::vector<ds4::ChatMessage>{{ds4::Role::User, q.text, ""}}));
    const float s = t.vector.scale();
    ds4::SweepOptions so;
    so.scales = {-s, 0.0f, s};
    so.generation.max_tokens = 128;
    so.generation.stop_tokens = {tok.specials().eos};
    const auto rows = ds4::sweep(model, prompts, t.vector, ds4::SweepMetric::ResponseLength, so);
    auto naming_share = [&](const ds4::SweepRow& row) {
        size_t named = 0;
        for (size_t i = 0; i < test.size(); ++i) named += tok.decode(row.responses[i]).find(test[i].subject) != std::string::npos;
        return static_cast<double>(named) / static_cast<double>(test.size());
    };
    std::printf("  mean answer tokens on %zu test questions: %.1f at -s, %.1f unsteered, %.1f at +s\n", test.size(),
                rows[0].mean, rows[1].mean, rows[2].mean);
    std::printf("  answers naming the subject: %.0f%% at -s, %.0f%% unsteered, %.0f%% at +s\n",
                100 * naming_share(rows[0]), 100 * naming_share(rows[1]), 100 * naming_share(rows[2]));
    for (size_t i = 0; i < 3; ++i)
        std::printf("  e.g. \"%s\"\n    -s: %s\n     0: %s\n    +s: %s\n", test[i].text.c_str(),
                    tok.decode(rows[0].responses[i]).c_str(), tok.decode(rows[1].responses[i]).c_str(),
                    tok.decode(rows[2].responses[i]).c_str());
    ASSERT_GT(rows[1].mean, 0.0);
    EXPECT_LE(rows[2].mean, 0.6 * rows[1].mean);
    EXPECT_GE(rows[0].mean, 1.4 * rows[1].mean);
    EXPECT_GE(naming_share(rows[2]), naming_share(rows[1]) - 0.10);
    EXPECT_GE(naming_share(rows[0]), naming_share(rows[1]) - 0.10);
}

}  // namespace
