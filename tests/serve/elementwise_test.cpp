#include "kernels/kernels.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

using namespace weft::serve;

TEST_CASE("swiglu matches silu(gate) * up in double precision, tails and extremes included", "[kernels]") {
    // 8-lane body and scalar tail both covered: n = 37.
    std::vector<float> gate{-200.0f, -88.5f, -87.0f, -30.0f, -1.0f, -1e-3f, 0.0f, 1e-3f, 0.5f, 1.0f, 3.0f, 20.0f, 87.0f, 95.0f};
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 4.0f);
    while (gate.size() < 37) gate.push_back(dist(rng));
    std::vector<float> up(gate.size());
    for (float& u : up) u = dist(rng);
    std::vector<float> out(gate.size());
    kernels::swiglu(gate.data(), up.data(), out.data(), gate.size());
    for (std::size_t i = 0; i < gate.size(); ++i) {
        INFO("gate " << gate[i] << " up " << up[i]);
        const double g = gate[i];
        const double expected = g / (1.0 + std::exp(-g)) * up[i];
        CHECK(std::isfinite(out[i]));
        CHECK(std::abs(out[i] - expected) <= 1e-6 * std::abs(expected) + 1e-30);
    }
}
