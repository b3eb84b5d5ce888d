# The git revision at configure time, for provenance in result files: DSV4_CONFIGURE_GIT_REV
# ("unknown" outside a git checkout). Code that records provenance asks git at run time first
# (the binary may be older than the last commit) and falls back to this.
#   dsv4_provenance_defines(SOURCE...)  compiles SOURCE with DSV4_CONFIGURE_GIT_REV and
#                                       DSV4_SOURCE_DIR defined
execute_process(COMMAND git -C ${PROJECT_SOURCE_DIR} rev-parse HEAD
                OUTPUT_VARIABLE DSV4_CONFIGURE_GIT_REV OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET RESULT_VARIABLE DSV4_GIT_RC)
if(NOT DSV4_GIT_RC EQUAL 0 OR DSV4_CONFIGURE_GIT_REV STREQUAL "")
  set(DSV4_CONFIGURE_GIT_REV "unknown")
endif()

function(dsv4_provenance_defines)
  set_source_files_properties(${ARGN} PROPERTIES COMPILE_DEFINITIONS
    "DSV4_CONFIGURE_GIT_REV=\"${DSV4_CONFIGURE_GIT_REV}\";DSV4_SOURCE_DIR=\"${PROJECT_SOURCE_DIR}\"")
endfunction()
