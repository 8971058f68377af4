// ABILayoutTests.swift — the ABI's struct layout, as Swift imports the header, equals the
// sizes and offsets docs/abi.md states (LP64). A field inserted, removed or reordered fails;
// the 1.1 fields sit exactly where the 1.0 structs ended (appended, never inserted).
import KeelABI
import XCTest

final class ABILayoutTests: XCTestCase {
  func testStructSizes() {
    XCTAssertEqual(MemoryLayout<keel_host>.size, 40)
    XCTAssertEqual(MemoryLayout<keel_param_decl>.size, 72)
    XCTAssertEqual(MemoryLayout<keel_param_value>.size, 40)
    XCTAssertEqual(MemoryLayout<keel_params>.size, 24)
    XCTAssertEqual(MemoryLayout<keel_scalar_decl>.size, 24)
    XCTAssertEqual(MemoryLayout<keel_objective_batch>.size, 168)
    XCTAssertEqual(MemoryLayout<keel_objective_output>.size, 64)
    XCTAssertEqual(MemoryLayout<keel_objective_vtable>.size, 40)
    XCTAssertEqual(MemoryLayout<keel_reward_sample>.size, 72)
    XCTAssertEqual(MemoryLayout<keel_reward_batch>.size, 24)
    XCTAssertEqual(MemoryLayout<keel_reward_output>.size, 24)
    XCTAssertEqual(MemoryLayout<keel_reward_vtable>.size, 24)
    XCTAssertEqual(MemoryLayout<keel_baseline_batch>.size, 40)
    XCTAssertEqual(MemoryLayout<keel_baseline_output>.size, 16)
    XCTAssertEqual(MemoryLayout<keel_baseline_vtable>.size, 16)
    XCTAssertEqual(MemoryLayout<keel_plugin>.size, 120)
  }

  func testStructSizeComesFirstAndKeyOffsets() {
    XCTAssertEqual(MemoryLayout<keel_plugin>.offset(of: \.struct_size), 0)
    XCTAssertEqual(MemoryLayout<keel_plugin>.offset(of: \.kind), 12)
    XCTAssertEqual(MemoryLayout<keel_plugin>.offset(of: \.name), 16)
    XCTAssertEqual(MemoryLayout<keel_plugin>.offset(of: \.params), 48)
    XCTAssertEqual(MemoryLayout<keel_plugin>.offset(of: \.create), 56)
    XCTAssertEqual(MemoryLayout<keel_plugin>.offset(of: \.vtable), 80)
    XCTAssertEqual(MemoryLayout<keel_plugin>.offset(of: \.load_state), 104)
    XCTAssertEqual(MemoryLayout<keel_host>.offset(of: \.context), 16)
    XCTAssertEqual(MemoryLayout<keel_host>.offset(of: \.error), 32)
    XCTAssertEqual(MemoryLayout<keel_objective_batch>.offset(of: \.seq_offsets), 24)
    XCTAssertEqual(MemoryLayout<keel_objective_batch>.offset(of: \.logp_frozen), 64)
    XCTAssertEqual(MemoryLayout<keel_objective_batch>.offset(of: \.total_sequences), 96)
    XCTAssertEqual(MemoryLayout<keel_objective_batch>.offset(of: \.max_response_tokens), 112)
    XCTAssertEqual(MemoryLayout<keel_objective_vtable>.offset(of: \.compute), 32)
    XCTAssertEqual(MemoryLayout<keel_reward_sample>.offset(of: \.response_len), 32)
    XCTAssertEqual(MemoryLayout<keel_reward_sample>.offset(of: \.truncated), 64)
  }

  /// ABI 1.1's fields start at the 1.0 struct's end, in the header's order.
  func testABI11FieldsAreAppended() {
    XCTAssertEqual(MemoryLayout<keel_param_decl>.offset(of: \.choices), 64)
    XCTAssertEqual(MemoryLayout<keel_params>.offset(of: \.instance_flags), 16)
    XCTAssertEqual(MemoryLayout<keel_plugin>.offset(of: \.get_instance_extension), 112)
    let batch: [(PartialKeyPath<keel_objective_batch>, Int)] = [(\.entropy, 120), (\.kl_ref, 128), (\.logp_teacher, 136),
                                                                (\.kl_teacher, 144), (\.vocab_size, 152), (\.logits, 160)]
    for (key, offset) in batch { XCTAssertEqual(MemoryLayout<keel_objective_batch>.offset(of: key), offset) }
    let out: [(PartialKeyPath<keel_objective_output>, Int)] = [(\.grad_entropy, 32), (\.grad_kl_ref, 40), (\.grad_kl_teacher, 48),
                                                               (\.grad_logits, 56)]
    for (key, offset) in out { XCTAssertEqual(MemoryLayout<keel_objective_output>.offset(of: key), offset) }
    XCTAssertEqual(MemoryLayout<keel_ext_per_call>.size, 16)
    XCTAssertEqual(MemoryLayout<keel_ext_per_call>.offset(of: \.reason), 8)
    XCTAssertEqual([KEEL_OBJECTIVE_USES_REF, KEEL_OBJECTIVE_USES_ENTROPY, KEEL_OBJECTIVE_USES_REF_KL, KEEL_OBJECTIVE_USES_TEACHER,
                    KEEL_OBJECTIVE_USES_TEACHER_KL, KEEL_OBJECTIVE_USES_LOGITS], [1, 2, 4, 8, 16, 32])
  }

  func testVersionConstants() {
    XCTAssertEqual(KEEL_ABI_MAJOR, 1)
    XCTAssertEqual(KEEL_ABI_MINOR, 1)
    XCTAssertEqual(KEEL_KIND_OBJECTIVE, 1)
    XCTAssertEqual(KEEL_KIND_REWARD, 2)
    XCTAssertEqual(KEEL_KIND_BASELINE, 3)
  }
}
