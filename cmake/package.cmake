# Installing tern as a library: libraries, headers, pkg-config file, CMake
# package. Included from the top-level CMakeLists.txt once the library targets
# exist. Layout under the prefix:
#   lib/libtern.a, lib/libtern.so -> libtern.so.<soversion> -> libtern.so.<version>
#   include/tern/*.h          the public headers, flat (#include <tern/tern.h>)
#   lib/pkgconfig/tern.pc
#   lib/cmake/tern/           tern-config.cmake and friends
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# core/version.h is what C code sees; project(VERSION) is what the SONAME,
# tern.pc and the CMake package say. Refuse to build when they disagree.
file(STRINGS ${PROJECT_SOURCE_DIR}/core/version.h tern_version_lines
     REGEX "^#define TERN_VERSION_(MAJOR|MINOR|PATCH) ")
foreach(part MAJOR MINOR PATCH)
  string(REGEX MATCH "TERN_VERSION_${part} +([0-9]+)" _ "${tern_version_lines}")
  if(NOT "${CMAKE_MATCH_1}" STREQUAL "${PROJECT_VERSION_${part}}")
    message(FATAL_ERROR "core/version.h says TERN_VERSION_${part} ${CMAKE_MATCH_1} but "
                        "project(VERSION) says ${PROJECT_VERSION}: update both")
  endif()
endforeach()

# The installed headers sit flat in include/tern/, where they find each other
# by bare name. Mirror that layout in the build tree with symbolic links, so
# that the examples compile with <tern/tern.h> exactly as a user's code does.
set(TERN_STAGED_INCLUDE ${PROJECT_BINARY_DIR}/include)
file(REMOVE_RECURSE ${TERN_STAGED_INCLUDE}/tern)
file(MAKE_DIRECTORY ${TERN_STAGED_INCLUDE}/tern)
foreach(h ${TERN_PUBLIC_HEADERS})
  get_filename_component(name ${h} NAME)
  file(CREATE_LINK ${h} ${TERN_STAGED_INCLUDE}/tern/${name} SYMBOLIC)
endforeach()
foreach(lib tern_static tern_shared)
  target_include_directories(${lib} PUBLIC $<BUILD_INTERFACE:${TERN_STAGED_INCLUDE}>
                                           $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
endforeach()

# Exported names: tern::tern is the shared library (what pkg-config gives by
# default too), tern::tern_static the archive. Two export sets, so that a
# machine without the liburcu / ck development files can still use the shared
# library through find_package.
set_target_properties(tern_shared PROPERTIES EXPORT_NAME tern)
set_target_properties(tern_static PROPERTIES EXPORT_NAME tern_static)
install(TARGETS tern_shared EXPORT tern-shared-targets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS tern_static EXPORT tern-static-targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${TERN_PUBLIC_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tern)

set(TERN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tern)
foreach(kind shared static)
  install(EXPORT tern-${kind}-targets NAMESPACE tern:: DESTINATION ${TERN_CMAKE_DIR})
endforeach()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/tern-config.cmake.in
                              ${PROJECT_BINARY_DIR}/tern-config.cmake
                              INSTALL_DESTINATION ${TERN_CMAKE_DIR})
# While the major version is 0 a minor release may break (SemVer item 4), so
# 0.2 only satisfies requests for 0.2.x; from 1.0 any 1.y satisfies 1.x.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(tern_compat SameMinorVersion)
else()
  set(tern_compat SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tern-config-version.cmake
                                 COMPATIBILITY ${tern_compat})
install(FILES ${PROJECT_BINARY_DIR}/tern-config.cmake
              ${PROJECT_BINARY_DIR}/tern-config-version.cmake
        DESTINATION ${TERN_CMAKE_DIR})

# tern.pc finds its prefix from its own location (${pcfiledir}), so the same
# file works for `cmake --install --prefix anywhere` and for DESTDIR staging.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(TERN_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(TERN_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(TERN_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
else()
  file(RELATIVE_PATH tern_pc_up /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
  string(REGEX REPLACE "/$" "" tern_pc_up "${tern_pc_up}")
  set(TERN_PC_PREFIX "\${pcfiledir}/${tern_pc_up}")
  set(TERN_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(TERN_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/tern.pc.in ${PROJECT_BINARY_DIR}/tern.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/tern.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
